// The synchronization period H of a round: the Quadratic Synchronization Rule and its baselines.
//
// At the first step t of a round, with eta = lr(t):
//
//   H = init_h                                              while t < warmup_steps or alpha == 0
//   H = max(min(max(floor((alpha/eta)^power), min_h), T - t), 1)                       otherwise
//
// Data-parallel optimizers (sgd, adamw) always have H = 1, and so do the steps before
// post_local_epoch in post-local SGD. Constant H is alpha = 0 with init_h = H;
// power 1 and 3 give the linear and cubic rules.
//
// Pure logic, thread-safe.
#ifndef QSR_COMMON_SYNC_RULE_H_
#define QSR_COMMON_SYNC_RULE_H_

#include <cstdint>

#include "common/recipe.h"

namespace qsr {

struct SyncRuleParams {
  double alpha = 0.0;
  double power = 2.0;
  int64_t min_h = 1;
  int64_t init_h = 1;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // T
  bool data_parallel = false;
  // Post-local SGD: steps before this one train data-parallel (H = 1); 0 = never.
  int64_t post_local_step = 0;

  static SyncRuleParams FromRecipe(const Recipe& recipe);
};

// H for a round that starts at step `t` whose first step has learning rate `lr`.
int64_t SyncPeriod(const SyncRuleParams& params, int64_t t, double lr);

}  // namespace qsr

#endif  // QSR_COMMON_SYNC_RULE_H_
