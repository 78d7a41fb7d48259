// RunController: the state machine of one training run, as the coordinator owns it.
//
// It holds the resolved recipe and the round planner and decides what each call means for the
// run: it admits workers (Membership, with the Join calls that wait in Admission), releases the
// round barrier (RoundBarrier) with the plans the planner makes, hands reports to the round
// ledger (RoundLedger: pending and committed rounds, evaluations, checkpoints, journal and
// run-log writes, statistics), and renders status (run_status). The handlers decide what a call
// or a deadline means; the run-level transitions it leads to (a generation forms or ends, the run
// finishes or fails) and the run state they change are RunLifecycle's. It speaks the qsr.v1
// protobuf messages but knows nothing of gRPC, so it is tested directly. Requests must have passed
// coordinator/request_validator (sizes, ranges, distinct co-member ranks); the controller checks
// only what depends on the run's state.
//
// Run lifecycle:
//   WAITING --(`workers` joined: generation 1 forms)--> RUNNING
//   RUNNING --(a failure: missed heartbeats, a worker error or early leave, a collective that
//              failed, a straggler past round_timeout; or new workers to admit at a round
//              boundary)--> REGROUPING --(the next generation forms, see Membership)--> RUNNING
//   RUNNING --(plan exhausted, all members left)--> FINISHED
//   REGROUPING --(no generation can form: below min_workers past the replacement timeout, or no
//                 surviving worker holds the model)--> FAILED
// Self-planned runs (JoinRequest.self_planned, programs on the qsr library): the members report
// the rounds they planned and trained (SelfPlannedRounds) and NextRounds is refused; the run is
// FINISHED once every member has left without an error.
// Stop() (an operator) ends the plan early: the rounds already handed out are trained, every
// worker is answered RUN_FINISHED at its next barrier, and once all have left the run is
// FINISHED with the message "stopped by operator".
//
// Recovery protocol (what a regroup means for the rounds). Each worker keeps in memory the state
// after the last round whose averaging it completed and says which round that was when it joins
// again. The new generation resumes at the round after the most advanced joiner's (it becomes
// rank 0 and broadcasts its model), so the interrupted round is replayed with the new membership.
// Rounds before that are committed with the reports that arrived (survivors flush theirs before
// joining again, and reports of an ended generation are still accepted); rounds from there on are
// planned again. rounds.jsonl therefore has every round exactly once.
//
// Thread-safe: every public method may be called from any gRPC thread. Callbacks passed to
// NextRounds run outside the internal lock, exactly once, on the thread that completed the barrier
// (a NextRounds call, Tick, or a failure).
#ifndef QSR_COORDINATOR_RUN_CONTROLLER_H_
#define QSR_COORDINATOR_RUN_CONTROLLER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/recipe.h"
#include "common/round_planner.h"
#include "coordinator/admission.h"
#include "coordinator/journal.h"
#include "coordinator/membership.h"
#include "coordinator/round_barrier.h"
#include "coordinator/round_ledger.h"
#include "coordinator/run_lifecycle.h"
#include "coordinator/run_log.h"
#include "coordinator/run_status.h"
#include "coordinator/self_planned_rounds.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

class RunController {
 public:
  struct Options {
    std::string run_id = "run";
    // How long a worker may wait at a rendezvous for its peers.
    absl::Duration rendezvous_timeout = absl::Minutes(5);
    // A worker that reaches the round barrier this long after the first one is a straggler: it
    // is declared failed and the others go on without it.
    absl::Duration round_timeout = absl::Minutes(5);
    // Liveness: how often workers call Heartbeat, and the silence that declares one failed.
    absl::Duration heartbeat_interval = absl::Seconds(1);
    absl::Duration heartbeat_timeout = absl::Seconds(10);
    // A regroup waits this long for the survivors, and below min_workers this long for
    // replacements, before it goes on without them or fails the run.
    absl::Duration regroup_timeout = absl::Seconds(10);
    absl::Duration replacement_timeout = absl::Minutes(5);
    // A NextRounds answer covers consecutive rounds until they add up to at least this many
    // steps, so short rounds (data-parallel, H = 1) cost one barrier per batch of steps.
    int64_t plan_batch_steps = 32;
    // Called, under the controller's lock, for every round as it is committed (for metrics). It
    // must be quick and must not call back into the controller. May be empty.
    std::function<void(const v1::RoundRecord&)> on_round_committed;
  };
  using NextRoundsCallback = std::function<void(const v1::NextRoundsReply&)>;
  using JoinCallback = std::function<void(const v1::JoinReply&)>;

  // REQUIRES: `recipe` resolved. `log` may be null (no run directory), `journal` null (no state
  // directory). `recovered`, when it exists, is the journal's record of this run: the controller
  // continues it (see RunLifecycle::Start).
  RunController(const Recipe& recipe, Options options, std::unique_ptr<RunLog> log,
                std::shared_ptr<Journal> journal = nullptr,
                const Journal::Recovered& recovered = Journal::Recovered());

  // Admits a worker to the next generation. Errors in the request are returned and `done` is not
  // called; otherwise `done` is called exactly once: when the worker's generation forms, when the
  // run cannot take it, or with outcome TIMEOUT at `poll_deadline` (the worker asks again).
  absl::Status Join(const v1::JoinRequest& request, absl::Time now, absl::Time poll_deadline,
                    JoinCallback done);
  // For callers that do not wait (tests, a formed generation): Join with a poll deadline of `now`.
  absl::StatusOr<v1::JoinReply> JoinNow(const v1::JoinRequest& request, absl::Time now);

  absl::StatusOr<v1::HeartbeatReply> Heartbeat(const v1::HeartbeatRequest& request, absl::Time now);

  // The round barrier (see the proto). Errors in the request are returned and `done` is not
  // called; otherwise `done` is called exactly once. Heartbeat and NextRounds take co-members
  // (a host agent's workers): each must be a member of the caller's generation.
  absl::Status NextRounds(const v1::NextRoundsRequest& request, absl::Time now,
                          NextRoundsCallback done);

  absl::StatusOr<v1::ReportReply> Report(const v1::ReportRequest& request, absl::Time now);
  absl::StatusOr<v1::LeaveReply> Leave(const v1::LeaveRequest& request, absl::Time now);

  v1::GetStatusReply Status(absl::Time now) const;
  v1::ListRoundsReply Rounds(const v1::ListRoundsRequest& request) const;
  v1::ListEvalsReply Evals() const;

  // Asks the run to end after the rounds already handed out (see the lifecycle above). Idempotent;
  // when the run has already ended, the reply's outcome says how.
  v1::StopReply Stop(const v1::StopRequest& request);

  // Acts on deadlines: missed heartbeats, stragglers, regroups, Join polls. Call periodically.
  void Tick(absl::Time now);

  // True once the run has ended (FINISHED or FAILED) and no worker is still in it.
  bool Done() const;
  bool Failed() const;
  // Blocks until Done() or the deadline; returns Done().
  bool AwaitDone(absl::Time deadline) const;

  const Recipe& recipe() const { return recipe_; }
  int64_t rendezvous_timeout_ms() const {
    return absl::ToInt64Milliseconds(options_.rendezvous_timeout);
  }

 private:
  using Completion = std::function<void()>;

  // The Join of a worker the run can take (not ended, not stopping).
  void Admit(const v1::JoinRequest& request, absl::Time now, absl::Time poll_deadline,
             JoinCallback done, std::vector<Completion>* completions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The outcome of a member's call when the run has ended or the caller's generation has; OK
  // otherwise.
  v1::Outcome MemberOutcome(Membership::Standing standing, int64_t generation) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::JoinReply MemberReply(int rank) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When every active member waits at the barrier: the plan for the next rounds goes to all of
  // them (or, with workers waiting to be admitted, the group re-forms). Called on every arrival
  // and whenever a member stops counting (it left), so that the others do not wait for it.
  void MaybeReleaseBarrier(absl::Time now, std::vector<Completion>* completions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Serves the batch of rounds starting at `next_round` (again, for a retried call).
  v1::NextRoundsReply PlanBatch(int64_t next_round) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Acts on missed heartbeats and stragglers.
  void CheckLiveness(absl::Time now, std::vector<Completion>* completions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool DoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Recipe recipe_;
  // RecipeToYaml(recipe_), rendered once: every Join reply carries it.
  const std::string recipe_yaml_;
  const Options options_;
  const RoundPlanner planner_;
  const absl::Time started_;

  mutable absl::Mutex mu_;
  // Whether members plan their own rounds (the qsr library), and their reports when they do.
  SelfPlannedRounds self_planned_ ABSL_GUARDED_BY(mu_);
  Membership membership_ ABSL_GUARDED_BY(mu_);
  Admission admission_ ABSL_GUARDED_BY(mu_);  // of membership_
  RoundBarrier barrier_ ABSL_GUARDED_BY(mu_);
  RoundLedger ledger_ ABSL_GUARDED_BY(mu_);
  // The run-level transitions and state; borrows the parts above, so it is declared after them.
  RunLifecycle lifecycle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_RUN_CONTROLLER_H_
