// FakeCoordinator: a CoordinatorClient that stands in for qsr-coordinator inside one test process,
// so that a worker's side of the protocol (join, rounds, regroup, reports, leave) runs without a
// server or other processes.
//
// It plays a run of `FakeRun::rounds` rounds of a fixed H, handed out `rounds_per_batch` at a
// time, through the generations a test scripts with AddGeneration(), in order:
//   - Join waits (up to the call's deadline, then outcome TIMEOUT, as the coordinator's poll)
//     until the generation's `world_size` workers have asked; ranks follow the order of their
//     worker ids; the reply's start_round is the first joiner's next_round (start_step = round x
//     H). With no generation left, Join answers RUN_FINISHED once the run has finished, else
//     REJECTED.
//   - NextRounds hands out the rounds from the asked one on, RUN_FINISHED after the last.
//   - A generation ends as scripted (FakeGeneration::EndBy): when a member asks NextRounds for
//     `end_round` or later (answered GENERATION_ENDED), or on the first heartbeat after a member
//     was handed round `end_round` (that heartbeat and every later one, and NextRounds from then
//     on, answer GENERATION_ENDED), so that the worker learns of it while it trains.
//   - KvSet/KvGet are an in-memory rendezvous store (KvGet waits for all its keys up to its
//     timeout_ms, then answers TIMEOUT).
// Every request is recorded for the test to inspect.
//
// Thread-safe: several workers (threads) may share one fake, as they share one coordinator.
#ifndef QSR_TESTS_CLIENT_FAKE_COORDINATOR_H_
#define QSR_TESTS_CLIENT_FAKE_COORDINATOR_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "client/coordinator_client.h"

namespace qsr {

struct FakeRun {
  std::string run_id = "fake";
  std::string recipe_yaml;  // what Join hands out (RecipeToYaml of a resolved recipe)
  int64_t h = 2;
  int64_t rounds = 4;
  int64_t rounds_per_batch = 2;
  std::set<int64_t> eval_after;        // rounds after which the workers evaluate
  int64_t heartbeat_interval_ms = 20;  // small, so that an ended generation is seen quickly
  int64_t rendezvous_timeout_ms = 30000;
};

// Aggregate: FakeGeneration{world_size, end_by, end_round}.
struct FakeGeneration {
  enum class EndBy { kRunsToTheEnd, kNextRounds, kHeartbeat };
  int world_size = 1;
  EndBy end_by = EndBy::kRunsToTheEnd;
  int64_t end_round = 0;
};

class FakeCoordinator : public CoordinatorClient {
 public:
  explicit FakeCoordinator(FakeRun run);

  // Generations are numbered 1, 2, ... in the order they are added.
  void AddGeneration(FakeGeneration generation);

  // Every request received, in order.
  std::vector<v1::JoinRequest> joins() const;
  std::vector<v1::ReportRequest> reports() const;
  std::vector<v1::LeaveRequest> leaves() const;
  std::vector<v1::HeartbeatRequest> heartbeats() const;
  // The rendezvous keys set, in order.
  std::vector<std::string> kv_keys() const;
  // The round reports of `worker_id` (from every generation), in the order received.
  std::vector<v1::RoundReport> RoundsOf(const std::string& worker_id) const;
  std::vector<v1::EvalReport> EvalsOf(const std::string& worker_id) const;
  // The generation of each of `worker_id`'s round reports, in the same order as RoundsOf.
  std::vector<int64_t> RoundGenerationsOf(const std::string& worker_id) const;

  absl::StatusOr<v1::JoinReply> Join(const v1::JoinRequest& request, absl::Time deadline) override;
  absl::StatusOr<v1::NextRoundsReply> NextRounds(const v1::NextRoundsRequest& request,
                                                 absl::Time deadline) override;
  absl::StatusOr<v1::ReportReply> Report(const v1::ReportRequest& request,
                                         absl::Time deadline) override;
  absl::StatusOr<v1::LeaveReply> Leave(const v1::LeaveRequest& request,
                                       absl::Time deadline) override;
  absl::StatusOr<v1::HeartbeatReply> Heartbeat(const v1::HeartbeatRequest& request,
                                               absl::Time deadline) override;
  absl::StatusOr<v1::KvSetReply> KvSet(const v1::KvSetRequest& request,
                                       absl::Time deadline) override;
  absl::StatusOr<v1::KvGetReply> KvGet(const v1::KvGetRequest& request,
                                       absl::Time deadline) override;

 private:
  // A generation that formed: its members by rank and where it starts.
  struct Formed {
    std::vector<std::string> members;
    int64_t start_round = 0;
  };
  bool Ended(int64_t generation) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ended_.count(generation) > 0;
  }
  v1::RoundPlan Plan(int64_t round) const;

  const FakeRun run_;
  mutable absl::Mutex mu_;
  std::vector<FakeGeneration> generations_ ABSL_GUARDED_BY(mu_);
  // The generation that formed last (0: none yet); generation g is formed_[g - 1].
  int64_t current_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Formed> formed_ ABSL_GUARDED_BY(mu_);
  // The workers that asked to join the next generation, in order, with the first one's round.
  std::vector<std::string> joining_ ABSL_GUARDED_BY(mu_);
  int64_t joining_round_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<int64_t> ended_ ABSL_GUARDED_BY(mu_);
  // EndBy::kHeartbeat: generations whose end_round was handed out (they end at the next beat).
  std::set<int64_t> ending_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::string> kv_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> kv_keys_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::JoinRequest> joins_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ReportRequest> reports_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::LeaveRequest> leaves_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::HeartbeatRequest> heartbeats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qsr

#endif  // QSR_TESTS_CLIENT_FAKE_COORDINATOR_H_
