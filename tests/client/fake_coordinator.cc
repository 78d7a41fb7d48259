#include "tests/client/fake_coordinator.h"

#include <algorithm>
#include <utility>

namespace qsr {
namespace {

v1::Outcome Outcome(v1::Outcome::Code code, const std::string& message) {
  v1::Outcome outcome;
  outcome.set_code(code);
  outcome.set_message(message);
  return outcome;
}

}  // namespace

FakeCoordinator::FakeCoordinator(FakeRun run) : run_(std::move(run)) {}

void FakeCoordinator::AddGeneration(FakeGeneration generation) {
  absl::MutexLock lock(&mu_);
  generations_.push_back(generation);
}

std::vector<v1::JoinRequest> FakeCoordinator::joins() const {
  absl::MutexLock lock(&mu_);
  return joins_;
}

std::vector<v1::ReportRequest> FakeCoordinator::reports() const {
  absl::MutexLock lock(&mu_);
  return reports_;
}

std::vector<v1::LeaveRequest> FakeCoordinator::leaves() const {
  absl::MutexLock lock(&mu_);
  return leaves_;
}

std::vector<v1::HeartbeatRequest> FakeCoordinator::heartbeats() const {
  absl::MutexLock lock(&mu_);
  return heartbeats_;
}

std::vector<std::string> FakeCoordinator::kv_keys() const {
  absl::MutexLock lock(&mu_);
  return kv_keys_;
}

std::vector<v1::RoundReport> FakeCoordinator::RoundsOf(const std::string& worker_id) const {
  std::vector<v1::RoundReport> rounds;
  for (const v1::ReportRequest& r : reports()) {
    if (r.worker_id() == worker_id)
      rounds.insert(rounds.end(), r.rounds().begin(), r.rounds().end());
  }
  return rounds;
}

std::vector<v1::EvalReport> FakeCoordinator::EvalsOf(const std::string& worker_id) const {
  std::vector<v1::EvalReport> evals;
  for (const v1::ReportRequest& r : reports()) {
    if (r.worker_id() == worker_id) evals.insert(evals.end(), r.evals().begin(), r.evals().end());
  }
  return evals;
}

std::vector<int64_t> FakeCoordinator::RoundGenerationsOf(const std::string& worker_id) const {
  std::vector<int64_t> generations;
  for (const v1::ReportRequest& r : reports()) {
    if (r.worker_id() == worker_id)
      generations.insert(generations.end(), r.rounds_size(), r.generation());
  }
  return generations;
}

v1::RoundPlan FakeCoordinator::Plan(int64_t round) const {
  v1::RoundPlan plan;
  plan.set_round(round);
  plan.set_start_step(round * run_.h);
  plan.set_h(run_.h);
  plan.set_lr(0.05);
  plan.set_eval_after(run_.eval_after.count(round) > 0);
  return plan;
}

absl::StatusOr<v1::JoinReply> FakeCoordinator::Join(const v1::JoinRequest& request,
                                                    absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  joins_.push_back(request);
  v1::JoinReply reply;
  const int64_t generation = current_ + 1;  // the one forming
  if (generation > static_cast<int64_t>(generations_.size())) {
    *reply.mutable_outcome() =
        finished_ ? Outcome(v1::Outcome::RUN_FINISHED, "the run has finished")
                  : Outcome(v1::Outcome::REJECTED, "no generation left in the script");
    return reply;
  }
  if (std::find(joining_.begin(), joining_.end(), request.worker_id()) == joining_.end()) {
    if (joining_.empty()) joining_round_ = request.next_round();
    joining_.push_back(request.worker_id());
  }
  if (static_cast<int>(joining_.size()) == generations_[generation - 1].world_size) {
    Formed formed;
    formed.members = std::move(joining_);
    std::sort(formed.members.begin(), formed.members.end());
    formed.start_round = joining_round_;
    formed_.push_back(std::move(formed));
    joining_.clear();
    current_ = generation;
  }
  auto formed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return current_ >= generation; };
  if (!mu_.AwaitWithDeadline(absl::Condition(&formed), deadline)) {
    *reply.mutable_outcome() = Outcome(v1::Outcome::TIMEOUT, "the generation has not formed");
    return reply;
  }
  const Formed& g = formed_[generation - 1];
  const auto it = std::find(g.members.begin(), g.members.end(), request.worker_id());
  reply.set_run_id(run_.run_id);
  reply.set_rank(static_cast<int>(it - g.members.begin()));
  reply.set_world_size(static_cast<int>(g.members.size()));
  reply.set_generation(generation);
  reply.set_recipe_yaml(run_.recipe_yaml);
  reply.set_start_round(g.start_round);
  reply.set_start_step(g.start_round * run_.h);
  reply.set_rendezvous_timeout_ms(run_.rendezvous_timeout_ms);
  reply.set_heartbeat_interval_ms(run_.heartbeat_interval_ms);
  return reply;
}

absl::StatusOr<v1::NextRoundsReply> FakeCoordinator::NextRounds(
    const v1::NextRoundsRequest& request, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  v1::NextRoundsReply reply;
  const int64_t generation = request.generation();
  const int64_t next = request.next_round();
  if (generation != current_ || Ended(generation)) {
    *reply.mutable_outcome() = Outcome(v1::Outcome::GENERATION_ENDED, "generation ended");
    return reply;
  }
  if (next >= run_.rounds) {
    finished_ = true;
    *reply.mutable_outcome() = Outcome(v1::Outcome::RUN_FINISHED, "the run has finished");
    return reply;
  }
  const FakeGeneration& script = generations_[generation - 1];
  int64_t end = std::min(run_.rounds, next + run_.rounds_per_batch);
  if (script.end_by == FakeGeneration::EndBy::kNextRounds) {
    if (next >= script.end_round) {
      ended_.insert(generation);
      *reply.mutable_outcome() = Outcome(v1::Outcome::GENERATION_ENDED, "scripted end");
      return reply;
    }
    end = std::min(end, script.end_round);
  } else if (script.end_by == FakeGeneration::EndBy::kHeartbeat) {
    if (next > script.end_round) {
      // The round that ends the generation was handed out: its heartbeat says so, and so does
      // this call once it has.
      auto ended = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return Ended(generation); };
      mu_.AwaitWithDeadline(absl::Condition(&ended), deadline);
      ended_.insert(generation);
      *reply.mutable_outcome() = Outcome(v1::Outcome::GENERATION_ENDED, "scripted end");
      return reply;
    }
    end = std::min(end, script.end_round + 1);
    if (end == script.end_round + 1) ending_.insert(generation);
  }
  for (int64_t r = next; r < end; ++r) *reply.add_rounds() = Plan(r);
  return reply;
}

absl::StatusOr<v1::ReportReply> FakeCoordinator::Report(const v1::ReportRequest& request,
                                                        absl::Time) {
  absl::MutexLock lock(&mu_);
  reports_.push_back(request);
  return v1::ReportReply();
}

absl::StatusOr<v1::LeaveReply> FakeCoordinator::Leave(const v1::LeaveRequest& request, absl::Time) {
  absl::MutexLock lock(&mu_);
  leaves_.push_back(request);
  return v1::LeaveReply();
}

absl::StatusOr<v1::HeartbeatReply> FakeCoordinator::Heartbeat(const v1::HeartbeatRequest& request,
                                                              absl::Time) {
  absl::MutexLock lock(&mu_);
  heartbeats_.push_back(request);
  v1::HeartbeatReply reply;
  const int64_t generation = request.generation();
  if (ending_.count(generation) > 0) ended_.insert(generation);
  if (generation < current_ || Ended(generation)) {
    *reply.mutable_outcome() = Outcome(v1::Outcome::GENERATION_ENDED, "scripted end");
  }
  return reply;
}

absl::StatusOr<v1::KvSetReply> FakeCoordinator::KvSet(const v1::KvSetRequest& request, absl::Time) {
  absl::MutexLock lock(&mu_);
  kv_[request.key()] = request.value();
  kv_keys_.push_back(request.key());
  return v1::KvSetReply();
}

absl::StatusOr<v1::KvGetReply> FakeCoordinator::KvGet(const v1::KvGetRequest& request,
                                                      absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto all_there = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const std::string& key : request.keys()) {
      if (kv_.count(key) == 0) return false;
    }
    return true;
  };
  v1::KvGetReply reply;
  const absl::Time until =
      std::min(deadline, absl::Now() + absl::Milliseconds(request.timeout_ms()));
  if (!mu_.AwaitWithDeadline(absl::Condition(&all_there), until)) {
    *reply.mutable_outcome() = Outcome(v1::Outcome::TIMEOUT, "keys not set in time");
    return reply;
  }
  for (const std::string& key : request.keys()) reply.add_values(kv_[key]);
  return reply;
}

}  // namespace qsr
