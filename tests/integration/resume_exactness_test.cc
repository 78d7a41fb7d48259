// Resuming from a checkpoint continues the same run bit for bit for the sync modes that keep
// state between syncs: bfloat16 syncs (each rank's reference state), overlapped syncs
// (sync_overlap) and Local AdamW with averaged moments (avg_m / avg_v), and a TorchScript model
// scripted in Python (a residual CNN with BatchNorm and dropout, re-estimated before every
// evaluation) trained on a `tensors` file Python saved. For each, an uninterrupted run, a run
// stopped after 2 of 3 epochs, and its resumption (resume: latest) train `mlp` on Fashion-MNIST (or
// the scripted model) with real qsr-worker processes; the resumed rounds must equal the
// uninterrupted run's digest for digest and loss for loss, and end with the same model bytes.
#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint_manifest.h"
#include "common/round_planner.h"
#include "coordinator/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/integration/run_to_end.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

constexpr char kDataDir[] = "/usr/share/datasets/fashion-mnist";
constexpr int64_t kStepsPerEpoch = 12;
constexpr int64_t kResumeStep = 2 * kStepsPerEpoch;

struct Case {
  std::string name;
  std::string optimizer;
  std::string sync_precision;
  double overlap = 0;
  bool torchscript = false;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::unique_ptr<CoordinatorServer> RunToEnd(const Recipe& recipe, const std::string& run_dir) {
  testing::RunToEndOptions run;
  run.worker_bin = QSR_WORKER_BIN;
  run.run_id = "resume";
  run.workers_timeout = absl::Seconds(100);
  return testing::RunToEnd(recipe, run_dir, run);
}

class ResumeExactnessTest : public ::testing::TestWithParam<Case> {};

TEST_P(ResumeExactnessTest, ResumedRunEqualsUninterruptedRunDigestForDigest) {
  ASSERT_TRUE(std::filesystem::exists(kDataDir)) << "no Fashion-MNIST at " << kDataDir;
  const Case c = GetParam();
  const bool adam = c.optimizer == "localadamw";
  Recipe recipe;
  recipe.model = "mlp";
  recipe.optimizer = c.optimizer;
  recipe.workers = 2;
  recipe.total_batch_size = 32;
  recipe.steps_per_epoch = kStepsPerEpoch;
  recipe.epochs = 3;
  recipe.epochs_for_sche = 3;
  recipe.max_lr = adam ? 2e-3 : 0.05;
  recipe.min_lr = adam ? 8e-4 : 0.02;
  recipe.warmup_steps = 2;
  recipe.alpha = adam ? 1.6e-3 : 0.04;  // QSR: H grows from min_h = 2 as the LR decays
  recipe.min_h = 2;
  recipe.init_h = 2;
  recipe.seed = 3;
  recipe.init_model_by_seed = 5;
  recipe.sync_precision = c.sync_precision;
  recipe.sync_overlap = c.overlap;
  recipe.avg_m = recipe.avg_v = adam;
  recipe.save_freq = 1;
  recipe.save_opt = true;
  recipe.eval_batch_size = 1000;
  testing::TempDir dir;
  if (c.torchscript) {
    const std::string command = absl::StrCat(QSR_PYTHON, " ", QSR_SOURCE_DIR,
                                             "/tests/integration/torchscript_e2e.py script ",
                                             dir.path(), "/net.ts ", dir.path(), "/data.pt");
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    recipe.model = "torchscript";
    recipe.model_path = dir.path() + "/net.ts";
    recipe.dataset = "tensors";
    recipe.data_dir = dir.path() + "/data.pt";
    recipe.bn = true;
    recipe.bn_batches = 2;
  }

  Recipe full = recipe;
  full.checkpoint_dir = dir.path() + "/ckpt_full";
  ASSERT_TRUE(ResolveRecipe(full).ok());
  const std::vector<Round> plan = RoundPlanner(full).Plan();
  ASSERT_TRUE(std::any_of(plan.begin(), plan.end(), [](const Round& r) {
    return r.end_step() == kResumeStep;
  })) << "the interruption point must be a round boundary";
  std::unique_ptr<CoordinatorServer> a = RunToEnd(full, dir.path() + "/a");
  ASSERT_NE(a, nullptr);
  const v1::ListRoundsReply want = a->controller().Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(want.rounds_size(), static_cast<int>(plan.size()));

  Recipe part = recipe;
  part.epochs = 2;
  part.checkpoint_dir = dir.path() + "/ckpt";
  ASSERT_TRUE(ResolveRecipe(part).ok());
  ASSERT_NE(RunToEnd(part, dir.path() + "/b1"), nullptr);

  Recipe resumed = recipe;
  resumed.checkpoint_dir = part.checkpoint_dir;
  resumed.resume = "latest";
  ASSERT_TRUE(ResolveRecipe(resumed).ok());
  absl::StatusOr<ChosenCheckpoint> chosen = ApplyResume(resumed, "");
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  ASSERT_EQ(chosen->manifest.step, kResumeStep);
  std::unique_ptr<CoordinatorServer> b = RunToEnd(resumed, dir.path() + "/b2");
  ASSERT_NE(b, nullptr);
  const v1::ListRoundsReply got = b->controller().Rounds(v1::ListRoundsRequest());

  std::vector<v1::RoundRecord> tail;
  for (const v1::RoundRecord& r : want.rounds()) {
    if (r.step() >= kResumeStep) tail.push_back(r);
  }
  ASSERT_EQ(got.rounds_size(), static_cast<int>(tail.size()));
  int compared = 0;
  for (size_t i = 0; i < tail.size(); ++i) {
    const v1::RoundRecord& g = got.rounds(static_cast<int>(i));
    EXPECT_EQ(g.round(), tail[i].round());
    EXPECT_EQ(g.h(), tail[i].h());
    EXPECT_EQ(g.train_loss(), tail[i].train_loss()) << "round " << g.round();
    EXPECT_TRUE(g.identical()) << "round " << g.round();
    EXPECT_EQ(g.digest_checked(), tail[i].digest_checked()) << "round " << g.round();
    if (g.digest_checked()) {
      EXPECT_NE(g.params_digest(), 0u);
      EXPECT_EQ(g.params_digest(), tail[i].params_digest()) << "round " << g.round();
      ++compared;
    }
  }
  // Every resumed round without overlap; with it, the rounds that evaluate (one per epoch).
  EXPECT_EQ(compared, c.overlap > 0 ? 1 : static_cast<int>(tail.size()));
  const std::string model = "/model_step=36-epoch=3.pt";
  const std::string want_model =
      testing::ReadFile(CheckpointStepDir(full.checkpoint_dir, 36) + model);
  ASSERT_GT(want_model.size(), 1000u);
  EXPECT_TRUE(testing::ReadFile(CheckpointStepDir(part.checkpoint_dir, 36) + model) == want_model)
      << "the final models differ";
  EXPECT_EQ(
      testing::JsonField(testing::ReadLines(dir.path() + "/b2/evals.jsonl").back(), "test_loss"),
      testing::JsonField(testing::ReadLines(dir.path() + "/a/evals.jsonl").back(), "test_loss"));
}

INSTANTIATE_TEST_SUITE_P(
    SyncModes, ResumeExactnessTest,
    ::testing::Values(Case{"localsgd_bf16", "localsgd", "bf16"},
                      Case{"localsgd_bf16_overlap", "localsgd", "bf16", 0.5},
                      Case{"localadamw_avg_moments_bf16", "localadamw", "bf16"},
                      Case{"torchscript_model_localsgd", "localsgd", "fp32", 0, true}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace qsr
