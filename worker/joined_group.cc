#include "worker/joined_group.h"

#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/backoff.h"
#include "glog/logging.h"

namespace qsr {

JoinedGroup::JoinedGroup(CoordinatorClient* client, GroupMember member)
    : client_(client),
      member_(std::move(member)),
      incarnation_(absl::StrCat(absl::Hex(absl::Uniform<uint64_t>(absl::BitGen())), "-",
                                absl::ToUnixNanos(absl::Now()))),
      store_(client) {}

JoinedGroup::~JoinedGroup() {
  if (heartbeater_) heartbeater_->Stop();
}

v1::JoinRequest JoinedGroup::Request() const {
  v1::JoinRequest join;
  join.set_worker_id(member_.worker_id);
  join.set_host(member_.host);
  join.set_device(member_.device);
  join.set_incarnation(incarnation_);
  join.set_self_planned(member_.self_planned);
  return join;
}

void JoinedGroup::Admit(const v1::JoinReply& joined) {
  join_ = joined;
  over_ = false;
  if (heartbeater_ == nullptr) {
    heartbeater_ = std::make_unique<Heartbeater>(
        client_,
        [this](int64_t generation, const v1::Outcome& outcome) { OnEnded(generation, outcome); });
  }
  // Heartbeats for the generation just joined, from the moment it formed (setting up the data or
  // the communicator can take longer than the heartbeat timeout).
  heartbeater_->SetIdentity(
      member_.worker_id, join_.rank(), join_.generation(),
      absl::Milliseconds(join_.heartbeat_interval_ms() > 0 ? join_.heartbeat_interval_ms() : 1000));
}

absl::Status JoinedGroup::Join(absl::Duration timeout) {
  absl::StatusOr<v1::JoinReply> joined = JoinWithRetry(client_, Request(), timeout);
  if (!joined.ok()) return joined.status();
  if (joined->outcome().code() != v1::Outcome::OK) {
    return absl::FailedPreconditionError("coordinator refused to admit this worker: " +
                                         joined->outcome().message());
  }
  Admit(*joined);
  joined_ = true;
  return absl::OkStatus();
}

absl::Status JoinedGroup::Rejoin(int64_t next_round, const absl::Status& failure,
                                 absl::Duration timeout, bool* finished) {
  Watch(nullptr);
  v1::JoinRequest join = Request();
  join.set_next_round(next_round);
  if (!failure.ok()) {
    join.set_failed_generation(join_.generation());
    join.set_failure(std::string(failure.message()).substr(0, 1024));
  }
  absl::StatusOr<v1::JoinReply> joined = JoinWithRetry(client_, join, timeout);
  if (!joined.ok()) return joined.status();
  switch (joined->outcome().code()) {
    case v1::Outcome::OK:
      break;
    case v1::Outcome::RUN_FINISHED:
      *finished = true;
      return absl::OkStatus();
    default:
      return absl::AbortedError("could not join the run again: " + joined->outcome().message());
  }
  if (joined->run_id() != join_.run_id()) {
    return absl::FailedPreconditionError(absl::StrCat("the coordinator now serves run ",
                                                      joined->run_id(), ", not ", join_.run_id()));
  }
  Admit(*joined);
  return absl::OkStatus();
}

std::unique_ptr<Store> JoinedGroup::RendezvousStore() {
  return std::make_unique<PrefixStore>(
      absl::StrCat(join_.run_id(), "/g", join_.generation(), "/c0"), &store_);
}

void JoinedGroup::Watch(Communicator* comm) {
  absl::MutexLock lock(&comm_mu_);
  watched_ = comm;
  watched_generation_ = join_.generation();
}

bool JoinedGroup::ended() const { return over_ || ended_generation_.load() == join_.generation(); }

void JoinedGroup::OnEnded(int64_t generation, const v1::Outcome& outcome) {
  if (outcome.code() == v1::Outcome::RUN_FINISHED) return;  // the barrier says so in order
  LOG(WARNING) << "coordinator: generation " << generation << " is over: " << outcome.message();
  ended_generation_.store(generation);
  // A collective with a dead or stopped peer would otherwise wait for its timeout.
  absl::MutexLock lock(&comm_mu_);
  if (watched_ != nullptr && watched_generation_ == generation) {
    watched_->Abort(
        absl::StrCat("the coordinator ended generation ", generation, ": ", outcome.message()));
  }
}

absl::StatusOr<v1::NextRoundsReply> JoinedGroup::NextRounds(int64_t next_round) {
  // Transport errors (a coordinator restarting) are retried for this long.
  constexpr absl::Duration kReconnect = absl::Minutes(2);
  // Between tries: 100 ms doubling to 1 s (the channel's own reconnect backoff is capped at 1 s),
  // jittered so that the workers of a group do not all ask a restarted coordinator at once.
  constexpr BackoffPolicy kRetry{absl::Milliseconds(100), absl::Seconds(1), 0.25};
  absl::BitGen random;
  int failures = 0;
  absl::Time unreachable_since = absl::InfiniteFuture();
  v1::NextRoundsRequest request;
  request.set_worker_id(member_.worker_id);
  request.set_rank(join_.rank());
  request.set_generation(join_.generation());
  request.set_next_round(next_round);
  while (true) {
    absl::StatusOr<v1::NextRoundsReply> reply = client_->NextRounds(
        request,
        absl::Now() + absl::Milliseconds(join_.rendezvous_timeout_ms()) + absl::Seconds(30));
    if (reply.ok()) {
      if (reply->outcome().code() == v1::Outcome::GENERATION_ENDED) over_ = true;
      return reply;
    }
    const bool transient =
        absl::IsUnavailable(reply.status()) || absl::IsDeadlineExceeded(reply.status());
    if (!transient) return reply.status();
    if (unreachable_since == absl::InfiniteFuture()) unreachable_since = absl::Now();
    if (absl::Now() - unreachable_since > kReconnect) return reply.status();
    if (ended()) {
      over_ = true;
      return absl::AbortedError("the coordinator ended this generation");
    }
    LOG(WARNING) << "NextRounds: " << reply.status() << "; retrying";
    absl::SleepFor(BackoffDelay(kRetry, failures++, random));
  }
}

void JoinedGroup::SetStep(int64_t step) {
  if (heartbeater_) heartbeater_->SetStep(step);
}

v1::ReportRequest JoinedGroup::ReportIdentity() const {
  v1::ReportRequest identity;
  identity.set_worker_id(member_.worker_id);
  identity.set_rank(join_.rank());
  identity.set_generation(join_.generation());
  return identity;
}

void JoinedGroup::StopHeartbeats() {
  if (heartbeater_) heartbeater_->Stop();
}

absl::Status JoinedGroup::Leave(const std::string& error) {
  StopHeartbeats();
  Watch(nullptr);
  if (!joined_) return absl::OkStatus();
  joined_ = false;
  v1::LeaveRequest leave;
  leave.set_worker_id(member_.worker_id);
  leave.set_rank(join_.rank());
  leave.set_generation(join_.generation());
  leave.set_error(error);
  return client_->Leave(leave, absl::Now() + absl::Seconds(10)).status();
}

}  // namespace qsr
