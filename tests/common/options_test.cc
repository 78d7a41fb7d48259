// The options beyond the core rule: cosine_step, post-local SGD, the sync budget, and the
// validation of the training options.
#include <cmath>

#include "common/lr_schedule.h"
#include "common/recipe.h"
#include "common/round_planner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

using ::testing::HasSubstr;

Recipe Base() {
  Recipe r;
  r.workers = 2;
  r.total_batch_size = 128;
  r.steps_per_epoch = 100;
  r.epochs = 10;
  r.max_lr = 0.1;
  r.min_lr = 0.0;
  r.warmup_steps = 50;
  r.alpha = 0.05;
  r.min_h = 2;
  r.init_h = 2;
  return r;
}

TEST(CosineStepTest, RoundsTheCosineToPowersOfBase) {
  Recipe r = Base();
  r.scheduler = "cosine_step";
  r.base = 2.0;
  ASSERT_TRUE(ResolveRecipe(r).ok());
  Recipe cosine = r;
  cosine.scheduler = "cosine";
  LrSchedule step_schedule(r), cosine_schedule(cosine);
  for (int64_t t : {50, 200, 500, 800, 990}) {
    const double lr = step_schedule.At(t);
    const double exponent = std::log2(lr);
    EXPECT_DOUBLE_EQ(exponent, std::round(exponent)) << "step " << t;
    // The nearest power of two in log space: within a factor sqrt(2) of the cosine value.
    EXPECT_LE(std::abs(std::log2(lr / cosine_schedule.At(t))), 0.5 + 1e-12) << "step " << t;
  }
  EXPECT_EQ(step_schedule.At(1000), 0.0);  // the cosine reaches min_lr = 0 at T
  // Warmup is unchanged.
  EXPECT_DOUBLE_EQ(step_schedule.At(25), cosine_schedule.At(25));
}

TEST(PostLocalTest, DataParallelBeforeTheEpochThenTheRule) {
  Recipe r = Base();
  r.post_local_epoch = 3;
  ASSERT_TRUE(ResolveRecipe(r).ok());
  std::vector<Round> plan = RoundPlanner(r).Plan();
  int64_t steps = 0;
  for (const Round& round : plan) {
    if (round.start_step < 300) {
      EXPECT_EQ(round.h, 1) << "round " << round.index;
      EXPECT_TRUE(round.data_parallel);
    } else {
      EXPECT_FALSE(round.data_parallel);
    }
    steps += round.h;
  }
  EXPECT_EQ(steps, r.TotalSteps());
  EXPECT_GT(plan.back().h, 2) << "QSR lengthens rounds once local training starts";

  Recipe dp = Base();
  dp.optimizer = "sgd";
  dp.post_local_epoch = 3;
  absl::Status s = ResolveRecipe(dp);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("post_local_epoch"));
}

TEST(SyncBudgetTest, FindsTheSmallestAlphaWithinTheBudget) {
  for (double budget : {0.4, 0.2, 0.1, 0.05}) {
    Recipe r = Base();
    absl::StatusOr<double> alpha = AlphaForSyncBudget(r, budget);
    ASSERT_TRUE(ResolveRecipe(r).ok());
    alpha = AlphaForSyncBudget(r, budget);
    ASSERT_TRUE(alpha.ok()) << alpha.status();
    Recipe at = r;
    at.alpha = *alpha;
    EXPECT_LE(RoundPlanner::Summarize(RoundPlanner(at).Plan()).sync_share, budget);
    // A slightly smaller alpha syncs more than the budget allows.
    at.alpha = *alpha * 0.98;
    EXPECT_GT(RoundPlanner::Summarize(RoundPlanner(at).Plan()).sync_share, budget) << budget;
  }
}

TEST(SyncBudgetTest, TheRecipeKeySetsAlpha) {
  Recipe r = Base();
  r.sync_budget = 0.1;
  ASSERT_TRUE(ResolveRecipe(r).ok());
  EXPECT_GT(r.alpha, 0.0);
  EXPECT_LE(RoundPlanner::Summarize(RoundPlanner(r).Plan()).sync_share, 0.1);
  // Resolving again gives the same alpha.
  const double alpha = r.alpha;
  ASSERT_TRUE(ResolveRecipe(r).ok());
  EXPECT_DOUBLE_EQ(r.alpha, alpha);
}

TEST(SyncBudgetTest, AnUnreachableBudgetSaysWhy) {
  Recipe r = Base();
  r.warmup_steps = 900;  // 450 warmup rounds of 2 steps always sync
  ASSERT_TRUE(ResolveRecipe(r).ok());
  absl::StatusOr<double> alpha = AlphaForSyncBudget(r, 0.1);
  ASSERT_FALSE(alpha.ok());
  EXPECT_THAT(std::string(alpha.status().message()), HasSubstr("cannot be met"));
  EXPECT_FALSE(AlphaForSyncBudget(r, 0.0).ok());
  EXPECT_FALSE(AlphaForSyncBudget(r, 1.5).ok());
}

TEST(OptionsTest, ImpossibleValuesNameTheKey) {
  struct Case {
    std::string key, value;
  };
  for (const Case& c : std::vector<Case>{{"label_smoothing", "1.5"},
                                         {"gradient_clipping", "-1"},
                                         {"avg_m", "true"},  // with localsgd
                                         {"base", "1"},
                                         {"bn_batches", "0"},
                                         {"post_local_epoch", "11"},
                                         {"sync_budget", "2"},
                                         {"nw", "-1"},
                                         {"mixup_alpha", "-0.2"},
                                         {"save_freq", "-3"},
                                         {"init_model_by_seed", "-1"},
                                         {"resume_from_step", "1000"},
                                         {"resume_from_epoch", "10"}}) {
    Recipe r = Base();
    ASSERT_TRUE(SetRecipeKey(r, c.key, c.value).ok()) << c.key;
    absl::Status s = ResolveRecipe(r);
    EXPECT_FALSE(s.ok()) << c.key << "=" << c.value;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.key)) << s.message();
  }
  Recipe ok = Base();
  ok.optimizer = "localadamw";
  ok.max_lr = 1e-3;
  ok.avg_m = ok.avg_v = true;
  ok.init_model_by_seed = -1;
  ok.init_model_path = "/tmp/init.pt";
  ok.resume_from_epoch = 4;
  ASSERT_TRUE(ResolveRecipe(ok).ok());
  EXPECT_EQ(ok.resume_from_step, 400);
}

TEST(OptionsTest, NewKeysRoundTripThroughYaml) {
  Recipe r = Base();
  r.label_smoothing = 0.1;
  r.gradient_clipping = 1.0;
  r.group_weight = true;
  r.scheduler = "cosine_step";
  r.post_local_epoch = 2;
  r.resume_pth = "ckpt/model.pt";
  ASSERT_TRUE(ResolveRecipe(r).ok());
  absl::StatusOr<Recipe> back = ParseRecipeYaml(RecipeToYaml(r), "round-trip");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(RecipeToYaml(*back), RecipeToYaml(r));
  EXPECT_DOUBLE_EQ(back->label_smoothing, 0.1);
  EXPECT_EQ(back->post_local_epoch, 2);
  EXPECT_EQ(back->resume_pth, "ckpt/model.pt");
}

}  // namespace
}  // namespace qsr
