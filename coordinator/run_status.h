// Run status and summary rendering: the GetStatus reply (`qsrctl status`) and summary.json, both
// drawn from one view of the run, so the two never disagree about the step, rounds or loss.
//
// Contract: RenderStatus and RenderSummaryJson read the view and change nothing. A run with no
// committed round reports step resume_from_step in status (0 in the summary), lr at step 0 until
// a round is served, and -1 for test accuracy and loss until an evaluation.
//
// Pure functions; thread-safe as long as nothing changes what the view points to meanwhile (the
// RunController renders under its lock).
#ifndef QSR_COORDINATOR_RUN_STATUS_H_
#define QSR_COORDINATOR_RUN_STATUS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "common/recipe.h"
#include "common/round_planner.h"
#include "coordinator/membership.h"
#include "coordinator/round_ledger.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

// What status and summary read. The pointers are borrowed for the call only.
struct RunView {
  std::string run_id;
  // WAITING, RUNNING, REGROUPING, FINISHED or FAILED.
  const char* state = "";
  std::string message;
  bool waiting = false;  // WAITING: the first generation has not formed
  bool ended = false;    // FINISHED or FAILED
  const Recipe* recipe = nullptr;
  const RoundPlanner* planner = nullptr;
  const Membership* membership = nullptr;
  const RoundLedger* ledger = nullptr;
  int world_size = 0;  // the recipe's workers
  absl::Time started;
  absl::Time ended_at;  // when ended
  int64_t failures = 0;
  int64_t regroups = 0;
  bool stop_requested = false;
};

v1::GetStatusReply RenderStatus(const RunView& view, absl::Time now);
// summary.json: one JSON object, written when the run ends.
std::string RenderSummaryJson(const RunView& view);

}  // namespace qsr

#endif  // QSR_COORDINATOR_RUN_STATUS_H_
