// The learning rate at a global step, as the authors' xscheduler.py computes it.
//
// Linear warmup from min_lr to max_lr over warmup_steps, then cosine or linear decay to min_lr at
// T = epochs_for_sche * steps_per_epoch, step decay by gamma at each decay point (epochs), or
// constant max_lr. The coordinator's round plan and the worker's per-step LR both come from here.
//
// Pure logic, immutable after construction, thread-safe.
#ifndef QSR_COMMON_LR_SCHEDULE_H_
#define QSR_COMMON_LR_SCHEDULE_H_

#include <cstdint>

#include "common/recipe.h"

namespace qsr {

class LrSchedule {
 public:
  // REQUIRES: `recipe` resolved (ResolveRecipe returned OK).
  explicit LrSchedule(const Recipe& recipe);

  // The LR of global step `step` (0-based). Steps past T keep min_lr (or the last step-decay
  // value).
  double At(int64_t step) const;

 private:
  Recipe recipe_;
};

}  // namespace qsr

#endif  // QSR_COMMON_LR_SCHEDULE_H_
