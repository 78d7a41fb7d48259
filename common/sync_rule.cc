#include "common/sync_rule.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace qsr {

SyncRuleParams SyncRuleParams::FromRecipe(const Recipe& recipe) {
  SyncRuleParams p;
  p.alpha = recipe.alpha;
  p.power = recipe.power;
  p.min_h = recipe.min_h;
  p.init_h = recipe.init_h;
  p.warmup_steps = recipe.warmup_steps;
  p.total_steps = recipe.ScheduleSteps();
  p.data_parallel = recipe.DataParallel();
  if (recipe.post_local_epoch > 0)
    p.post_local_step = recipe.post_local_epoch * recipe.steps_per_epoch;
  return p;
}

int64_t SyncPeriod(const SyncRuleParams& params, int64_t t, double lr) {
  if (params.data_parallel || t < params.post_local_step) return 1;
  // As in the authors' code, init_h is not capped at T - t; the planner cuts rounds at the run end.
  if (t < params.warmup_steps || params.alpha == 0) return params.init_h;

  const double remaining = static_cast<double>(params.total_steps - t);
  // lr <= 0 (or NaN) makes (alpha / lr)^power unbounded: H is as long as the schedule allows.
  double h = remaining;
  if (lr > 0) {
    const double raw = std::floor(std::pow(params.alpha / lr, params.power));
    // Comparisons in double keep a huge or infinite raw value from overflowing the int64 cast.
    if (raw < remaining) h = std::max(raw, static_cast<double>(params.min_h));
    h = std::min(h, remaining);
  }
  if (!(h >= 1.0)) return 1;
  return static_cast<int64_t>(h);
}

}  // namespace qsr
