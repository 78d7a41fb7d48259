#include "common/sync_rule.h"

#include <cstdint>
#include <limits>

#include "common/recipe.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

SyncRuleParams Params(double alpha, double power) {
  SyncRuleParams p;
  p.alpha = alpha;
  p.power = power;
  p.min_h = 2;
  p.init_h = 3;
  p.warmup_steps = 100;
  p.total_steps = 10000;
  return p;
}

TEST(SyncRuleTest, WarmupUsesInitH) {
  const SyncRuleParams p = Params(0.2, 2);
  EXPECT_EQ(SyncPeriod(p, 0, 0.05), 3);
  EXPECT_EQ(SyncPeriod(p, 99, 0.05), 3);
  EXPECT_EQ(SyncPeriod(p, 100, 0.05), 16);
}

TEST(SyncRuleTest, AlphaZeroIsConstantInitH) {
  const SyncRuleParams p = Params(0, 2);
  EXPECT_EQ(SyncPeriod(p, 500, 0.05), 3);
  EXPECT_EQ(SyncPeriod(p, 500, 1e-9), 3);
}

TEST(SyncRuleTest, PowersGiveExactValues) {
  EXPECT_EQ(SyncPeriod(Params(0.2, 1), 500, 0.05), 4);
  EXPECT_EQ(SyncPeriod(Params(0.2, 2), 500, 0.05), 16);
  EXPECT_EQ(SyncPeriod(Params(0.2, 3), 500, 0.05), 64);
}

TEST(SyncRuleTest, FloorsTheRawValue) {
  // (alpha / lr)^1 = 15.9999 must give 15, not 16.
  EXPECT_EQ(SyncPeriod(Params(15.9999, 1), 500, 1.0), 15);
  EXPECT_EQ(SyncPeriod(Params(0.2, 2), 500, 0.0500001), 15);
}

TEST(SyncRuleTest, FloorsAtMinH) {
  // (0.1 / 0.1)^2 = 1 < min_h = 2.
  EXPECT_EQ(SyncPeriod(Params(0.1, 2), 500, 0.1), 2);
}

TEST(SyncRuleTest, CapsAtRemainingScheduleSteps) {
  const SyncRuleParams p = Params(0.2, 2);
  EXPECT_EQ(SyncPeriod(p, 9990, 0.05), 10);
  EXPECT_EQ(SyncPeriod(p, 9999, 0.05), 1);
}

TEST(SyncRuleTest, AtLeastOnePastTheSchedule) {
  const SyncRuleParams p = Params(0.2, 2);
  EXPECT_EQ(SyncPeriod(p, 10000, 0.05), 1);
  EXPECT_EQ(SyncPeriod(p, 20000, 0.05), 1);
}

TEST(SyncRuleTest, TinyOrZeroLrIsCappedWithoutOverflow) {
  const SyncRuleParams p = Params(0.2, 3);
  EXPECT_EQ(SyncPeriod(p, 500, 1e-300), 9500);
  EXPECT_EQ(SyncPeriod(p, 500, 0.0), 9500);
  EXPECT_EQ(SyncPeriod(p, 500, -1.0), 9500);
  EXPECT_EQ(SyncPeriod(p, 500, std::numeric_limits<double>::quiet_NaN()), 9500);
}

TEST(SyncRuleTest, DataParallelIsAlwaysOne) {
  SyncRuleParams p = Params(0.2, 2);
  p.data_parallel = true;
  EXPECT_EQ(SyncPeriod(p, 0, 0.05), 1);
  EXPECT_EQ(SyncPeriod(p, 500, 0.05), 1);
}

TEST(SyncRuleTest, FromRecipe) {
  Recipe r;
  r.alpha = 0.01;
  r.power = 3;
  r.min_h = 4;
  r.init_h = 5;
  r.epochs = 10;
  r.epochs_for_sche = 20;
  r.steps_per_epoch = 100;
  r.warmup_steps = 50;
  ASSERT_TRUE(ResolveRecipe(r).ok());
  const SyncRuleParams p = SyncRuleParams::FromRecipe(r);
  EXPECT_EQ(p.alpha, 0.01);
  EXPECT_EQ(p.power, 3);
  EXPECT_EQ(p.min_h, 4);
  EXPECT_EQ(p.init_h, 5);
  EXPECT_EQ(p.warmup_steps, 50);
  EXPECT_EQ(p.total_steps, 2000);
  EXPECT_FALSE(p.data_parallel);
  r.optimizer = "adamw";
  EXPECT_TRUE(SyncRuleParams::FromRecipe(r).data_parallel);
}

}  // namespace
}  // namespace qsr
