#include "common/lr_schedule.h"

#include "common/recipe.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

// 10 epochs of 100 steps, 200 warmup steps: T = 1000, decay span 800.
Recipe MakeRecipe(const std::string& scheduler) {
  Recipe r;
  r.scheduler = scheduler;
  r.max_lr = 0.5;
  r.min_lr = 0.1;
  r.epochs = 10;
  r.steps_per_epoch = 100;
  r.warmup_steps = 200;
  EXPECT_TRUE(ResolveRecipe(r).ok());
  return r;
}

TEST(LrScheduleTest, WarmupRisesLinearlyFromMinToMax) {
  LrSchedule s(MakeRecipe("cosine"));
  EXPECT_DOUBLE_EQ(s.At(0), 0.1);
  EXPECT_DOUBLE_EQ(s.At(100), 0.3);
  EXPECT_DOUBLE_EQ(s.At(200), 0.5);
}

TEST(LrScheduleTest, CosineMidpointEndAndPastEnd) {
  LrSchedule s(MakeRecipe("cosine"));
  EXPECT_DOUBLE_EQ(s.At(600), 0.3);  // middle of [200, 1000]
  EXPECT_LT(s.At(601), s.At(600));
  EXPECT_DOUBLE_EQ(s.At(1000), 0.1);
  EXPECT_DOUBLE_EQ(s.At(5000), 0.1);
}

TEST(LrScheduleTest, CosineUsesEpochsForScheNotEpochs) {
  Recipe r = MakeRecipe("cosine");
  r.epochs_for_sche = 20;  // T = 2000: the midpoint of the decay moves to 1100
  ASSERT_TRUE(ResolveRecipe(r).ok());
  EXPECT_DOUBLE_EQ(LrSchedule(r).At(1100), 0.3);
}

TEST(LrScheduleTest, LinearDecay) {
  LrSchedule s(MakeRecipe("linear"));
  EXPECT_DOUBLE_EQ(s.At(200), 0.5);
  EXPECT_DOUBLE_EQ(s.At(600), 0.3);
  EXPECT_DOUBLE_EQ(s.At(1000), 0.1);
  EXPECT_DOUBLE_EQ(s.At(1500), 0.1);
}

TEST(LrScheduleTest, StepDecayAtDecayPoints) {
  Recipe r = MakeRecipe("step");
  r.decay_points = {3, 6};
  r.gamma = 0.1;
  LrSchedule s(r);
  EXPECT_DOUBLE_EQ(s.At(299), 0.5);
  EXPECT_DOUBLE_EQ(s.At(300), 0.05);
  EXPECT_DOUBLE_EQ(s.At(599), 0.05);
  EXPECT_DOUBLE_EQ(s.At(600), 0.005);
  EXPECT_DOUBLE_EQ(s.At(999), 0.005);
}

TEST(LrScheduleTest, StepWithoutDecayPointsIsConstant) {
  LrSchedule s(MakeRecipe("step"));
  EXPECT_DOUBLE_EQ(s.At(999), 0.5);
}

TEST(LrScheduleTest, ConstantAfterWarmup) {
  LrSchedule s(MakeRecipe("constant"));
  EXPECT_DOUBLE_EQ(s.At(0), 0.1);
  EXPECT_DOUBLE_EQ(s.At(200), 0.5);
  EXPECT_DOUBLE_EQ(s.At(999), 0.5);
}

TEST(LrScheduleTest, NoWarmupStartsAtMax) {
  Recipe r = MakeRecipe("cosine");
  r.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(LrSchedule(r).At(0), 0.5);
}

TEST(LrScheduleTest, AllWarmupHasNoDecaySpan) {
  Recipe r = MakeRecipe("cosine");
  r.warmup_steps = 1000;  // W == T
  ASSERT_TRUE(ResolveRecipe(r).ok());
  LrSchedule s(r);
  EXPECT_DOUBLE_EQ(s.At(500), 0.3);
  EXPECT_DOUBLE_EQ(s.At(1000), 0.5);
}

}  // namespace
}  // namespace qsr
