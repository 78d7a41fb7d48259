#include "coordinator/run_controller.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/outcome.h"

namespace qsr {
namespace {

constexpr const char* kStoppedByOperator = RunLifecycle::kStoppedByOperator;

Membership::Options MembershipOptions(const Recipe& recipe, const RunController::Options& o) {
  Membership::Options m;
  m.initial_size = static_cast<int>(recipe.workers);
  m.min_workers = static_cast<int>(recipe.min_workers > 0 ? recipe.min_workers : 1);
  m.max_workers = static_cast<int>(recipe.max_workers > 0 ? recipe.max_workers : recipe.workers);
  m.heartbeat_timeout = o.heartbeat_timeout;
  m.regroup_timeout = o.regroup_timeout;
  m.replacement_timeout = o.replacement_timeout;
  return m;
}

// A resumed run starts where the checkpoint left off; rounds keep the numbers a fresh run would
// have given the steps before it.
RoundLedger::Options LedgerOptions(const Recipe& recipe, const RoundPlanner& planner,
                                   const RunController::Options& o, absl::Time started) {
  RoundLedger::Options l;
  if (recipe.resume_from_step > 0) {
    l.start_round = planner.FirstRoundFrom(recipe.resume_from_step);
    l.start_step = recipe.resume_from_step;
  }
  l.started = started;
  l.on_round_committed = o.on_round_committed;
  return l;
}

template <typename Reply>
void Answer(std::function<void(const Reply&)> done, Reply reply,
            std::vector<std::function<void()>>* completions) {
  completions->push_back([cb = std::move(done), r = std::move(reply)] { cb(r); });
}

}  // namespace

RunController::RunController(const Recipe& recipe, Options options, std::unique_ptr<RunLog> log,
                             std::shared_ptr<Journal> journal, const Journal::Recovered& recovered)
    : recipe_(recipe),
      recipe_yaml_(RecipeToYaml(recipe_)),
      options_(std::move(options)),
      planner_(recipe),
      started_(absl::Now()),
      self_planned_(planner_.total_steps()),
      membership_(MembershipOptions(recipe_, options_)),
      admission_(&membership_, options_.run_id),
      ledger_(LedgerOptions(recipe_, planner_, options_, started_), std::move(log),
              std::move(journal)),
      lifecycle_(options_.run_id, started_,
                 {&recipe_, &planner_, &membership_, &admission_, &barrier_, &ledger_},
                 [this](int rank)
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return MemberReply(rank); }) {
  absl::MutexLock lock(&mu_);
  lifecycle_.Start(recovered, recipe_yaml_, started_);
}

v1::JoinReply RunController::MemberReply(int rank) const {
  v1::JoinReply reply;
  reply.set_run_id(options_.run_id);
  reply.set_rank(rank);
  reply.set_world_size(static_cast<int>(membership_.members().size()));
  reply.set_generation(membership_.generation());
  reply.set_recipe_yaml(recipe_yaml_);
  reply.set_start_round(ledger_.next_round());
  reply.set_start_step(ledger_.next_step());
  reply.set_rendezvous_timeout_ms(rendezvous_timeout_ms());
  reply.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  return reply;
}

absl::Status RunController::Join(const v1::JoinRequest& request, absl::Time now,
                                 absl::Time poll_deadline, JoinCallback done) {
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    if (request.next_round() > ledger_.next_round()) {
      return absl::InvalidArgumentError(
          absl::StrCat("next_round ", request.next_round(),
                       " was never served (rounds so far: ", ledger_.next_round(), ")"));
    }
    if (lifecycle_.ended() || lifecycle_.stop_requested()) {
      const std::string& message = lifecycle_.message();
      auto refused = WithOutcome<v1::JoinReply>(
          v1::Outcome::RUN_FINISHED, lifecycle_.ended()
                                         ? absl::StrCat("run is ", lifecycle_.StateName(),
                                                        message.empty() ? "" : ": ", message)
                                         : absl::StrCat("run is stopping: ", kStoppedByOperator));
      refused.set_run_id(options_.run_id);
      Answer(std::move(done), refused, &completions);
    } else if (absl::Status mode = self_planned_.NoteJoin(request.self_planned()); !mode.ok()) {
      auto refused = WithOutcome<v1::JoinReply>(v1::Outcome::REJECTED, std::string(mode.message()));
      refused.set_run_id(options_.run_id);
      Answer(std::move(done), refused, &completions);
    } else {
      Admit(request, now, poll_deadline, std::move(done), &completions);
    }
  }
  for (auto& c : completions) c();
  return absl::OkStatus();
}

void RunController::Admit(const v1::JoinRequest& request, absl::Time now, absl::Time poll_deadline,
                          JoinCallback done, std::vector<Completion>* completions) {
  const bool was_forming = membership_.forming();
  const int64_t max_workers = recipe_.max_workers > 0 ? recipe_.max_workers : recipe_.workers;
  auto member_reply = [this](int rank)
                          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return MemberReply(rank); };
  if (admission_.Join(request, now, poll_deadline, max_workers, member_reply, std::move(done),
                      completions)) {
    return;
  }
  if (!was_forming && membership_.forming()) {
    // The caller reported that its group broke: release the barrier too.
    lifecycle_.FailGeneration(membership_.end_reason(), {}, now, completions);
  }
  lifecycle_.MaybeForm(now, completions);
}

absl::StatusOr<v1::JoinReply> RunController::JoinNow(const v1::JoinRequest& request,
                                                     absl::Time now) {
  std::optional<v1::JoinReply> got;
  absl::Status s = Join(request, now, now, [&got](const v1::JoinReply& r) { got = r; });
  if (!s.ok()) return s;
  if (!got) Tick(now);  // still waiting for its generation: the poll ends now
  if (!got) return absl::InternalError("Join did not answer");
  return *got;
}

void RunController::MaybeReleaseBarrier(absl::Time now, std::vector<Completion>* completions) {
  if (!barrier_.open() || barrier_.waiting() == 0 ||
      barrier_.waiting() < membership_.active_members()) {
    return;
  }
  if (membership_.admission_pending()) {
    // A round boundary: the group re-forms with the workers waiting to join.
    lifecycle_.EndToAdmit(now, completions);
  } else {
    barrier_.Release(PlanBatch(barrier_.round()), completions);
  }
}

v1::Outcome RunController::MemberOutcome(Membership::Standing standing, int64_t generation) const {
  if (lifecycle_.ended()) {
    return MakeOutcome(lifecycle_.state() == RunLifecycle::State::kFailed
                           ? v1::Outcome::RUN_FAILED
                           : v1::Outcome::RUN_FINISHED,
                       absl::StrCat("run is ", lifecycle_.StateName(), ": ", lifecycle_.message()));
  }
  if (standing == Membership::Standing::kEnded) {
    return MakeOutcome(
        v1::Outcome::GENERATION_ENDED,
        absl::StrCat("generation ", generation, " has ended: ", membership_.end_reason()));
  }
  return MakeOutcome(v1::Outcome::OK, "");
}

absl::StatusOr<v1::HeartbeatReply> RunController::Heartbeat(const v1::HeartbeatRequest& request,
                                                            absl::Time now) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Membership::Standing> standing = membership_.CheckWithCoMembers(
      request.worker_id(), request.rank(), request.generation(), request.co_members(), now);
  if (!standing.ok()) return standing.status();
  v1::HeartbeatReply reply;
  *reply.mutable_outcome() = MemberOutcome(*standing, request.generation());
  return reply;
}

absl::Status RunController::NextRounds(const v1::NextRoundsRequest& request, absl::Time now,
                                       NextRoundsCallback done) {
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = self_planned_.CheckNextRounds(); !s.ok()) return s;
    absl::StatusOr<Membership::Standing> standing = membership_.CheckWithCoMembers(
        request.worker_id(), request.rank(), request.generation(), request.co_members(), now);
    if (!standing.ok()) return standing.status();
    v1::NextRoundsReply reply;
    *reply.mutable_outcome() = MemberOutcome(*standing, request.generation());
    if (reply.outcome().code() == v1::Outcome::OK && lifecycle_.stop_requested()) {
      // Every round handed out has been trained by this worker: it may leave.
      *reply.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FINISHED, kStoppedByOperator);
    }
    if (reply.outcome().code() != v1::Outcome::OK) {
      Answer(std::move(done), reply, &completions);
    } else {
      if (request.next_round() > ledger_.next_round()) {
        return absl::InvalidArgumentError(absl::StrCat("next_round ", request.next_round(),
                                                       " is out of range [0, ",
                                                       ledger_.next_round(), "]"));
      }
      // CheckWithCoMembers answered kCurrent: the ranks are this generation's.
      std::vector<int> ranks = {request.rank()};
      for (const v1::CoMember& m : request.co_members()) ranks.push_back(m.rank());
      absl::Status arrived = barrier_.Arrive(request.next_round(), ranks,
                                             static_cast<int>(membership_.members().size()), now,
                                             options_.round_timeout, std::move(done), &completions);
      if (!arrived.ok()) return arrived;
      MaybeReleaseBarrier(now, &completions);
    }
  }
  for (auto& c : completions) c();
  return absl::OkStatus();
}

v1::NextRoundsReply RunController::PlanBatch(int64_t next_round) {
  auto reply = WithOutcome<v1::NextRoundsReply>(v1::Outcome::OK, "");
  if (next_round < ledger_.next_round()) {
    // Everyone already holds these plans (a retried call): serve them again from the record.
    for (v1::RoundPlan& plan : ledger_.PendingFrom(next_round)) *reply.add_rounds() = plan;
    return reply;
  }
  for (v1::RoundPlan& plan :
       ledger_.ServeBatch(planner_, options_.plan_batch_steps, membership_.active_members())) {
    *reply.add_rounds() = std::move(plan);
  }
  if (reply.rounds_size() == 0) {
    lifecycle_.ExhaustPlan();
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FINISHED, "all rounds are done");
  }
  return reply;
}

absl::StatusOr<v1::ReportReply> RunController::Report(const v1::ReportRequest& request,
                                                      absl::Time now) {
  absl::MutexLock lock(&mu_);
  // Reports of an ended generation are still welcome: survivors flush them before joining again.
  absl::StatusOr<Membership::Standing> standing =
      membership_.Check(request.worker_id(), request.rank(), request.generation(), now);
  if (!standing.ok()) return standing.status();
  const bool ended = *standing == Membership::Standing::kEnded;
  const int members = static_cast<int>(membership_.members().size());
  for (const v1::RoundReport& r : request.rounds()) {
    absl::Status s = self_planned_.active()
                         ? self_planned_.Accept(request.worker_id(), r, members, ledger_)
                         : ledger_.AddRoundReport(request.worker_id(), r, ended);
    if (!s.ok()) {
      // The rounds before the refused one were taken: commit those that every member reported.
      ledger_.CommitReady(membership_.generation());
      return s;
    }
  }
  // Every rank computes the same evaluation (sums are all-reduced) and rank 0 reports it; rank 0
  // writes the checkpoint manifest once every worker has written its part.
  if (request.rank() == 0) {
    for (const v1::EvalReport& e : request.evals()) ledger_.AddEval(e, now);
    for (const v1::CheckpointReport& c : request.checkpoints()) ledger_.AddCheckpoint(c);
  }
  ledger_.CommitReady(membership_.generation());
  auto reply = WithOutcome<v1::ReportReply>(v1::Outcome::OK, "");
  return reply;
}

absl::StatusOr<v1::LeaveReply> RunController::Leave(const v1::LeaveRequest& request,
                                                    absl::Time now) {
  std::vector<Completion> completions;
  auto reply = WithOutcome<v1::LeaveReply>(v1::Outcome::OK, "");
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Membership::Standing> standing =
        membership_.Check(request.worker_id(), request.rank(), request.generation(), now);
    if (!standing.ok()) return standing.status();
    admission_.Leave(request.worker_id(), &completions);
    const bool ended = lifecycle_.ended();
    if (*standing == Membership::Standing::kEnded || ended) {
      // A worker of an ended generation (or of an ended run) gives up: do not wait for it.
      if (request.generation() == membership_.generation()) membership_.MarkLeft(request.rank());
      if (!ended) lifecycle_.MaybeForm(now, &completions);
    } else if (!request.error().empty()) {
      lifecycle_.FailGeneration(absl::StrCat("rank ", request.rank(), " failed: ", request.error()),
                                {request.rank()}, now, &completions);
    } else if (!self_planned_.active() && !lifecycle_.plan_exhausted() &&
               ledger_.next_round() > ledger_.start_round()) {
      // Leaving in the middle of the coordinator's plan. (Workers that never asked for a round,
      // such as programs using the qsr library, use the coordinator only to meet.)
      lifecycle_.FailGeneration(absl::StrCat("rank ", request.rank(), " left before the run ended"),
                                {request.rank()}, now, &completions);
    } else {
      // A self-planned run ends when its members say so: the first to leave has trained its
      // last round, and the run finishes once every member has left.
      if (self_planned_.active()) lifecycle_.ExhaustPlan();
      membership_.MarkLeft(request.rank());
      // The others may all be waiting for this one at the barrier.
      MaybeReleaseBarrier(now, &completions);
    }
    lifecycle_.MaybeFinish(&completions);
  }
  for (auto& c : completions) c();
  return reply;
}

void RunController::Tick(absl::Time now) {
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    if (lifecycle_.ended()) {
      // Nobody will tell a dead worker that the run is over: stop waiting for it.
      membership_.FailSilent(now);
    } else if (lifecycle_.state() == RunLifecycle::State::kRunning && !membership_.forming()) {
      CheckLiveness(now, &completions);
    }
    admission_.Expire(now, &completions);
    if (!lifecycle_.ended() && membership_.forming()) lifecycle_.MaybeForm(now, &completions);
  }
  for (auto& c : completions) c();
}

void RunController::CheckLiveness(absl::Time now, std::vector<Completion>* completions) {
  if (std::vector<int> expired = membership_.Expired(now); !expired.empty()) {
    lifecycle_.FailGeneration(
        absl::StrCat("rank(s) ", absl::StrJoin(expired, ","), " missed heartbeats for ",
                     absl::FormatDuration(options_.heartbeat_timeout)),
        expired, now, completions);
  } else if (barrier_.Overdue(now)) {
    std::vector<int> stragglers;
    for (const Membership::Member& m : membership_.members()) {
      if (m.active() && !barrier_.Waiting(m.rank)) stragglers.push_back(m.rank);
    }
    lifecycle_.FailGeneration(
        absl::StrCat("straggler rank(s) ", absl::StrJoin(stragglers, ","), " did not reach round ",
                     barrier_.round(), " within ", absl::FormatDuration(options_.round_timeout)),
        stragglers, now, completions);
  }
}

bool RunController::DoneLocked() const {
  return lifecycle_.ended() && membership_.active_members() == 0 && admission_.empty();
}

bool RunController::Done() const {
  absl::MutexLock lock(&mu_);
  return DoneLocked();
}

bool RunController::Failed() const {
  absl::MutexLock lock(&mu_);
  return lifecycle_.state() == RunLifecycle::State::kFailed;
}

bool RunController::AwaitDone(absl::Time deadline) const {
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return DoneLocked(); };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
}

v1::GetStatusReply RunController::Status(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  return RenderStatus(lifecycle_.View(), now);
}

v1::ListRoundsReply RunController::Rounds(const v1::ListRoundsRequest& request) const {
  absl::MutexLock lock(&mu_);
  return ledger_.ListRounds(request.from_round(), request.limit());
}

v1::ListEvalsReply RunController::Evals() const {
  absl::MutexLock lock(&mu_);
  v1::ListEvalsReply reply;
  for (const v1::EvalReport& e : ledger_.evals()) *reply.add_evals() = e;
  return reply;
}

v1::StopReply RunController::Stop(const v1::StopRequest& request) {
  std::vector<Completion> completions;
  v1::StopReply reply;
  {
    absl::MutexLock lock(&mu_);
    reply = lifecycle_.Stop(request.reason(), &completions);
  }
  for (auto& c : completions) c();
  return reply;
}

}  // namespace qsr
