// Every shipped recipe (recipes/**/*.yaml) parses, resolves and plans with the round planner that
// `qsrctl plan` and the coordinator use, and the paper's runs are all there with the rule each
// names.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/recipe.h"
#include "common/round_planner.h"

namespace qsr {
namespace {

std::string RecipePath(const std::string& relative) {
  return std::string(QSR_SOURCE_DIR) + "/recipes/" + relative;
}

// The recipe at `path`, resolved; an error names the file.
absl::StatusOr<Recipe> LoadResolved(const std::string& path) {
  absl::StatusOr<Recipe> r = LoadRecipeFile(path);
  if (!r.ok()) return r.status();
  if (absl::Status s = ResolveRecipe(*r); !s.ok()) return s;
  return r;
}

TEST(PaperRecipesTest, EveryRecipeParsesResolvesAndPlans) {
  int checked = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(RecipePath(""))) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    absl::StatusOr<Recipe> loaded = LoadResolved(entry.path().string());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const Recipe& r = *loaded;
    RoundPlanner planner(r);
    std::vector<Round> rounds = planner.Plan();
    ASSERT_FALSE(rounds.empty());
    EXPECT_EQ(rounds.back().end_step(), planner.total_steps());
    for (const Round& round : rounds) ASSERT_GE(round.h, 1) << "round " << round.index;
    ++checked;
  }
  EXPECT_GE(checked, 21);
}

// The ResNet QSR recipes state their H_base as min_h: the first round after warmup must have it.
TEST(PaperRecipesTest, ResNetQsrRecipesStartAtTheirStatedHBase) {
  for (const char* name :
       {"imagenet/resnet152-localsgd-qsr-cosine.yaml", "imagenet/resnet152-localsgd-qsr-step.yaml",
        "imagenet/resnet152-localsgd-linear-cosine.yaml",
        "imagenet/resnet152-localsgd-cubic-cosine.yaml"}) {
    SCOPED_TRACE(name);
    absl::StatusOr<Recipe> loaded = LoadResolved(RecipePath(name));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const Recipe& r = *loaded;
    ASSERT_GT(r.alpha, 0);
    RoundPlanner planner(r);
    std::vector<Round> rounds = planner.Plan();
    bool found = false;
    for (const Round& round : rounds) {
      if (round.start_step < r.warmup_steps) continue;
      EXPECT_EQ(round.h, r.min_h) << "first round after warmup, at step " << round.start_step
                                  << " (lr " << round.lr << ")";
      found = true;
      break;
    }
    EXPECT_TRUE(found);
  }
}

TEST(PaperRecipesTest, ConstantHBaselinesSyncEveryInitHSteps) {
  for (const auto& [name, h] : std::vector<std::pair<std::string, int64_t>>{
           {"imagenet/vit-b16-localadamw-constant-h4.yaml", 4},
           {"imagenet/resnet152-localsgd-constant-h-cosine.yaml", 10}}) {
    SCOPED_TRACE(name);
    absl::StatusOr<Recipe> loaded = LoadResolved(RecipePath(name));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const Recipe& r = *loaded;
    std::vector<Round> rounds = RoundPlanner(r).Plan();
    for (size_t i = 0; i + 1 < rounds.size(); ++i) ASSERT_EQ(rounds[i].h, h) << "round " << i;
  }
}

TEST(PaperRecipesTest, PostLocalSgdIsDataParallelBeforeItsSwitchEpoch) {
  absl::StatusOr<Recipe> loaded =
      LoadResolved(RecipePath("imagenet/resnet152-post-local-sgd-step.yaml"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Recipe& r = *loaded;
  ASSERT_EQ(r.post_local_epoch, 30);
  const int64_t switch_step = r.post_local_epoch * r.steps_per_epoch;
  int64_t local_rounds = 0;
  for (const Round& round : RoundPlanner(r).Plan()) {
    EXPECT_EQ(round.data_parallel, round.start_step < switch_step) << "step " << round.start_step;
    if (!round.data_parallel) {
      ++local_rounds;
      if (round.end_step() < r.epochs * r.steps_per_epoch) {
        EXPECT_EQ(round.h, 8);
      }
    }
  }
  EXPECT_GT(local_rounds, 0);
}

// The linear and cubic baselines use the rule's power the recipe names.
TEST(PaperRecipesTest, LinearAndCubicRecipesUseTheirPower) {
  for (const auto& [name, power] : std::vector<std::pair<std::string, double>>{
           {"imagenet/resnet152-localsgd-linear-cosine.yaml", 1},
           {"imagenet/resnet152-localsgd-cubic-cosine.yaml", 3}}) {
    absl::StatusOr<Recipe> r = LoadResolved(RecipePath(name));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->power, power) << name;
  }
}

}  // namespace
}  // namespace qsr
