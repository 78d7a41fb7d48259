// The round plan: which steps each averaging round covers.
//
// Round 0 starts at step 0; round r+1 starts where round r ended. A round's length is the sync
// rule's H at its first step, cut short where the run ends (epochs * steps_per_epoch), so the run
// always ends with an averaged model. The coordinator serves these rounds and `qsrctl plan` prints
// them: both come from this one class, so what the plan shows (including which rounds evaluate
// and checkpoint) is what the workers are told.
//
// Pure logic, immutable after construction, thread-safe.
#ifndef QSR_COMMON_ROUND_PLANNER_H_
#define QSR_COMMON_ROUND_PLANNER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "common/lr_schedule.h"
#include "common/recipe.h"
#include "common/sync_rule.h"

namespace qsr {

struct Round {
  int64_t index = 0;  // 0-based round number
  int64_t start_step = 0;
  int64_t h = 0;    // steps in this round (the rule's H, cut at the run's end)
  double lr = 0.0;  // learning rate of the round's first step
  // The round trains data-parallel (gradients averaged every step): the optimizer is sgd/adamw,
  // or the round lies before post_local_epoch.
  bool data_parallel = false;
  // Evaluate the averaged model after this round: it crosses an epoch boundary or ends the run.
  bool eval_after = false;
  // Checkpoint after this round: it reaches a multiple of save_freq epochs or ends the run
  // (never when save_freq is 0).
  bool checkpoint_after = false;
  int64_t end_step() const { return start_step + h; }
};

struct PlanSummary {
  int64_t rounds = 0;
  int64_t total_steps = 0;
  double mean_h = 0.0;
  int64_t max_h = 0;
  double sync_share = 0.0;  // rounds / total_steps: the share of steps that end in a sync
};

class RoundPlanner {
 public:
  // REQUIRES: `recipe` resolved.
  explicit RoundPlanner(const Recipe& recipe);

  // The round with index `index` that starts at `start_step`; nullopt when start_step is at or
  // past the end of the run.
  std::optional<Round> RoundAt(int64_t index, int64_t start_step) const;
  // Every round of the run, in order.
  std::vector<Round> Plan() const;
  // The index of the first round that starts at or after `step`: where a run resumed from a
  // checkpoint at `step` picks up, keeping the numbers a fresh run gives the rounds before it.
  int64_t FirstRoundFrom(int64_t step) const;
  static PlanSummary Summarize(const std::vector<Round>& rounds);

  int64_t total_steps() const { return total_steps_; }
  const LrSchedule& schedule() const { return schedule_; }

 private:
  LrSchedule schedule_;
  SyncRuleParams rule_;
  int64_t total_steps_;
  int64_t steps_per_epoch_;
  int64_t save_freq_;  // epochs between checkpoints; 0: none
};

// The smallest alpha whose plan ends a round in at most `budget` (in (0, 1]) of its steps, by
// bisection (the share of syncing steps does not increase with alpha). An error names the
// smallest share the recipe can reach (warmup rounds of init_h always sync).
absl::StatusOr<double> AlphaForSyncBudget(const Recipe& recipe, double budget);

}  // namespace qsr

#endif  // QSR_COMMON_ROUND_PLANNER_H_
