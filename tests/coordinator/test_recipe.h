// The small run the coordinator tests share: mlp, 3 epochs of 20 steps, QSR with H from 2.
#ifndef QSR_TESTS_COORDINATOR_TEST_RECIPE_H_
#define QSR_TESTS_COORDINATOR_TEST_RECIPE_H_

#include "common/recipe.h"
#include "gtest/gtest.h"

namespace qsr::testing {

inline Recipe SmallQsrRecipe(int workers, int min_workers = 1, int max_workers = -1) {
  Recipe r;
  r.model = "mlp";
  r.workers = workers;
  r.min_workers = min_workers;
  r.max_workers = max_workers;
  r.total_batch_size = 96;
  r.steps_per_epoch = 20;
  r.epochs = 3;
  r.max_lr = 0.1;
  r.min_lr = 0.0;
  r.warmup_steps = 5;
  r.alpha = 0.05;
  r.min_h = 2;
  r.init_h = 2;
  absl::Status s = ResolveRecipe(r);
  EXPECT_TRUE(s.ok()) << s;
  return r;
}

}  // namespace qsr::testing

#endif  // QSR_TESTS_COORDINATOR_TEST_RECIPE_H_
