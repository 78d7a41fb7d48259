// RunLifecycle: the run-level transitions of a training run (a generation forms, ends or resumes;
// the run finishes or fails) and the run state they change.
//
// The RunController's handlers (Join, NextRounds, Report, Leave, Heartbeat, Tick, Stop) decide
// what a call or a deadline means for the run; the lifecycle never reads a request. It owns the
// state (WAITING, RUNNING, FINISHED, FAILED; RUNNING reads REGROUPING while the next generation
// forms), the end message and time, the failure and regroup counts, and whether the plan is
// exhausted or an operator asked the run to stop. It borrows the parts a transition moves:
// Membership (forms and ends generations), Admission (its waiting Joins are answered when a
// generation forms or the run ends), RoundBarrier (its waiting calls are answered when a
// generation or the run ends) and RoundLedger (the journal's started, generation and ended
// entries, summary.json, and the round a new generation resumes at).
//
// Transitions (the diagram is in run_controller.h):
//   MaybeForm       the forming generation forms: its joiners are answered and it is journaled;
//                   after the first generation the plan resumes at the most advanced joiner's
//                   round, or the run FAILS when nobody holds the model that far. A generation
//                   that can never form FAILS the run, or FINISHES it when every round was
//                   committed anyway (its members trained the rest and left).
//   FailGeneration  a failure ends the active generation (counted in failures); the barrier is
//                   answered GENERATION_ENDED and the next generation forms when it can.
//   EndToAdmit      a round boundary with workers waiting to join: the same, not a failure.
//   MaybeFinish     the run FINISHES once no member is left and the plan is exhausted (or the
//                   workers only met here and never asked for a round).
//   Stop            an operator ends the plan early; the run finishes once every member left.
// A run that FAILS answers the barrier and the waiting Joins RUN_FAILED. It ends once: the ended
// entry is journaled and summary.json written exactly then.
//
// Thread-compatible: the RunController guards it with its mutex, the same that guards the parts
// it borrows, and holds it around every call. Callbacks never run here: they are appended to
// `completions`, for the caller to run after it drops the lock. `member_reply` is called under
// that lock.
//
// Lifecycle: constructed with the run, after the parts it borrows (they must outlive it); Start
// once, before any other call.
#ifndef QSR_COORDINATOR_RUN_LIFECYCLE_H_
#define QSR_COORDINATOR_RUN_LIFECYCLE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/recipe.h"
#include "common/round_planner.h"
#include "coordinator/admission.h"
#include "coordinator/journal.h"
#include "coordinator/membership.h"
#include "coordinator/round_barrier.h"
#include "coordinator/round_ledger.h"
#include "coordinator/run_status.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

class RunLifecycle {
 public:
  enum class State { kWaiting, kRunning, kFinished, kFailed };
  using Completion = std::function<void()>;
  static constexpr char kStoppedByOperator[] = "stopped by operator";

  // What the transitions move. Borrowed: each must outlive the lifecycle.
  struct Parts {
    const Recipe* recipe = nullptr;
    const RoundPlanner* planner = nullptr;
    Membership* membership = nullptr;
    Admission* admission = nullptr;
    RoundBarrier* barrier = nullptr;
    RoundLedger* ledger = nullptr;
  };

  // `member_reply`: the Join reply of the formed generation's member with a rank.
  RunLifecycle(std::string run_id, absl::Time started, Parts parts,
               Admission::MemberReply member_reply);

  // A fresh run (`recovered.exists` false) journals that it started, with its recipe. A
  // restarted coordinator takes the journal's rounds back; a run that had ended stays ended, and
  // one with a generation is RUNNING with that generation ended: its members are expected to
  // join again and the group re-forms as after any failure.
  void Start(const Journal::Recovered& recovered, const std::string& recipe_yaml, absl::Time now);

  State state() const { return state_; }
  // WAITING, RUNNING, REGROUPING, FINISHED or FAILED.
  const char* StateName() const;
  const std::string& message() const { return message_; }
  bool ended() const { return state_ == State::kFinished || state_ == State::kFailed; }
  bool plan_exhausted() const { return plan_exhausted_; }
  bool stop_requested() const { return stop_requested_; }

  // Forms the next generation when it is ready, or ends the run when it never can (see above).
  void MaybeForm(absl::Time now, std::vector<Completion>* completions);
  // Ends the active generation for a failure of `failed_ranks` (none: the group broke as a
  // whole); everyone waiting at the barrier is answered GENERATION_ENDED.
  void FailGeneration(const std::string& reason, const std::vector<int>& failed_ranks,
                      absl::Time now, std::vector<Completion>* completions);
  // Ends the active generation at a round boundary to admit the workers waiting to join.
  void EndToAdmit(absl::Time now, std::vector<Completion>* completions);
  // The planner has no round left to serve.
  void ExhaustPlan() { plan_exhausted_ = true; }
  void MaybeFinish(std::vector<Completion>* completions);
  // An operator's stop (idempotent); the reply says at which step the run ends, or, when it has
  // ended already, how.
  v1::StopReply Stop(const std::string& reason, std::vector<Completion>* completions);

  // For status and summary.json; the pointers in it are the borrowed parts.
  RunView View() const;

 private:
  void EndGeneration(const std::string& reason, const std::vector<int>& failed_ranks,
                     absl::Time now, std::vector<Completion>* completions);
  // A generation after the first formed: moves the plan to where it resumes (see the recovery
  // protocol in run_controller.h). False when the run failed instead.
  bool Resume(std::vector<Completion>* completions);
  // Ends the run as failed (nothing when it has ended already), answering every waiting call.
  void Fail(const std::string& message, std::vector<Completion>* completions);
  // Every round served has been committed and there is none left to serve.
  bool EveryRoundCommitted() const;
  // Ends the run as finished: commits what is ready, answers waiting barrier calls, journals.
  void Finish(std::vector<Completion>* completions);
  // The run has ended: journal and summary.json.
  void RecordEnd();

  const std::string run_id_;
  const absl::Time started_;
  const Parts parts_;
  const Admission::MemberReply member_reply_;

  State state_ = State::kWaiting;
  std::string message_;
  absl::Time ended_;
  int64_t regroups_ = 0;
  int64_t failures_ = 0;
  bool plan_exhausted_ = false;
  // An operator asked the run to stop (plan_exhausted_ is set with it).
  bool stop_requested_ = false;
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_RUN_LIFECYCLE_H_
