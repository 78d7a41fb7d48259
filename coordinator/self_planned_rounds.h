// SelfPlannedRounds: the rounds of a run whose members plan them themselves (JoinRequest
// .self_planned: programs on the qsr library, whose LocalOptimizer decides H in-process) and
// report each one they trained, instead of receiving plans from the coordinator's barrier.
//
// The first Join of a run decides whether its rounds are self-planned (NoteJoin); a later Join
// that disagrees is refused, since a group cannot both follow the coordinator's plan and its own.
//
// In a self-planned run a round report is accepted (Accept) when it is
//   - the next round: numbered RoundLedger::next_round(), starting where the last round ended
//     (the run's first round may start at any step from the ledger's next_step() on, so that a
//     program resuming mid-schedule can report), and ending at or before total_steps when that
//     is known (> 0); it is then served to the ledger with the report's lr, expecting a report
//     from each of the generation's members;
//   - a round already served and still pending, with the same [start_step, start_step + h) as
//     its first report (another member's report, or the same member's again);
//   - a round already committed, with the same steps (a retried report: ignored).
// Anything else (a gap, an overlap, a mismatch between members, a round past total_steps) is
// INVALID_ARGUMENT naming the field and what is allowed. The ledger then commits each round once
// every member reported it (RoundLedger::CommitReady), which writes rounds.jsonl.
//
// Pure logic on the caller's RoundLedger. Thread-compatible: the RunController calls it under its
// lock. Lifecycle: one per run, created with it.
#ifndef QSR_COORDINATOR_SELF_PLANNED_ROUNDS_H_
#define QSR_COORDINATOR_SELF_PLANNED_ROUNDS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "coordinator/round_ledger.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

class SelfPlannedRounds {
 public:
  // `total_steps`: the run's last step (rounds must end at or before it); 0 when not known.
  explicit SelfPlannedRounds(int64_t total_steps) : total_steps_(total_steps) {}

  // A Join asking to plan its own rounds (or not). The run's first Join decides;
  // FAILED_PRECONDITION naming both modes when a later one disagrees.
  absl::Status NoteJoin(bool self_planned);
  // Whether the run's rounds are self-planned (false until the first Join).
  bool active() const { return mode_ == Mode::kSelfPlanned; }
  // NextRounds in a self-planned run: FAILED_PRECONDITION (nobody hands out plans there).
  absl::Status CheckNextRounds() const;

  // A round report of `worker_id`, a member of a generation of `members` members; see above.
  // REQUIRES: active().
  absl::Status Accept(const std::string& worker_id, const v1::RoundReport& report, int members,
                      RoundLedger& ledger) const;

 private:
  enum class Mode { kUndecided, kCoordinatorPlanned, kSelfPlanned };
  // A new round (report.round() == ledger.next_round()): its steps must follow the last round's.
  absl::Status CheckNewRound(const v1::RoundReport& report, const RoundLedger& ledger) const;

  const int64_t total_steps_;
  Mode mode_ = Mode::kUndecided;
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_SELF_PLANNED_ROUNDS_H_
