// End to end on loopback: an in-process coordinator (OS-chosen port) and real qsr-worker
// processes training `mlp` on a slice of Fashion-MNIST.
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cli/process_group.h"
#include "common/round_planner.h"
#include "coordinator/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

constexpr char kDataDir[] = "/usr/share/datasets/fashion-mnist";

struct Case {
  std::string optimizer;
  int workers;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return absl::StrCat(info.param.optimizer, "_", info.param.workers, "workers");
}

class TrainingTest : public ::testing::TestWithParam<Case> {};

TEST_P(TrainingTest, TrainsTheCoordinatorsPlanWithIdenticalModels) {
  if (!std::filesystem::exists(kDataDir)) GTEST_SKIP() << "no Fashion-MNIST at " << kDataDir;
  const Case c = GetParam();
  Recipe recipe;
  recipe.model = "mlp";
  recipe.optimizer = c.optimizer;
  recipe.workers = c.workers;
  recipe.total_batch_size = 96;  // divisible by 1, 2 and 3 workers
  recipe.steps_per_epoch = 25;   // a 2,400-example slice per epoch
  recipe.epochs = 2;
  const bool adam = c.optimizer.find("adam") != std::string::npos;
  recipe.max_lr = adam ? 2e-3 : 0.05;
  recipe.min_lr = 0.0;
  recipe.warmup_steps = 4;
  recipe.alpha = 0.4 * recipe.max_lr;  // H = min_h at the peak LR, growing as it decays
  recipe.min_h = 2;
  recipe.init_h = 2;
  recipe.seed = 3;
  recipe.init_model_by_seed = 5;
  ASSERT_TRUE(ResolveRecipe(recipe).ok());

  testing::TempDir dir;
  CoordinatorServer::Options options;
  options.run_dir = dir.path() + "/run";
  options.run.run_id = "it";
  options.run.rendezvous_timeout = absl::Seconds(60);
  options.run.plan_batch_steps = 8;
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(recipe, options);
  ASSERT_TRUE(server.ok()) << server.status();

  ProcessGroup workers;
  for (int i = 0; i < c.workers; ++i) {
    ASSERT_TRUE(workers
                    .Spawn(absl::StrCat("w", i),
                           {QSR_WORKER_BIN, "--coordinator", (*server)->address(), "--threads",
                            "1", "--worker-id", absl::StrCat("worker-", i)})
                    .ok());
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(240);
  while (!workers.AllExited() && absl::Now() < deadline) workers.Pump(absl::Milliseconds(100));
  ASSERT_TRUE(workers.AllExited()) << "workers did not finish within the deadline";
  for (int i = 0; i < c.workers; ++i) EXPECT_EQ(workers.ExitCode(i), 0) << "worker " << i;
  ASSERT_TRUE((*server)->AwaitDone(absl::Now() + absl::Seconds(10)));

  // The rounds trained are exactly the plan `qsrctl plan` prints for this recipe.
  std::vector<Round> plan = RoundPlanner(recipe).Plan();
  v1::ListRoundsReply rounds = (*server)->controller().Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(rounds.rounds_size(), static_cast<int>(plan.size()));
  for (size_t i = 0; i < plan.size(); ++i) {
    const v1::RoundRecord& r = rounds.rounds(static_cast<int>(i));
    EXPECT_EQ(r.round(), plan[i].index);
    EXPECT_EQ(r.step(), plan[i].start_step);
    EXPECT_EQ(r.h(), plan[i].h);
    EXPECT_DOUBLE_EQ(r.lr(), plan[i].lr);
    EXPECT_EQ(r.workers(), c.workers);
    // Every worker reported the same parameter digest after the round's averaging.
    EXPECT_TRUE(r.identical()) << "round " << r.round();
    if (c.workers > 1 && c.optimizer == "localsgd") EXPECT_GT(r.bytes(), 0);
  }
  if (c.optimizer == "sgd") {
    for (const Round& r : plan) EXPECT_EQ(r.h, 1);
  }

  // The loss falls and the accuracy is far above chance (10%).
  double first = 0, last = 0;
  const int k = std::min(5, rounds.rounds_size() / 2);
  for (int i = 0; i < k; ++i) {
    first += rounds.rounds(i).train_loss();
    last += rounds.rounds(rounds.rounds_size() - 1 - i).train_loss();
  }
  EXPECT_LT(last, 0.8 * first);
  v1::GetStatusReply status = (*server)->controller().Status(absl::Now());
  EXPECT_EQ(status.state(), "FINISHED");
  EXPECT_GT(status.test_acc(), 0.6);

  // The run directory has one line per round and one per evaluation.
  EXPECT_EQ(testing::ReadLines(options.run_dir + "/rounds.jsonl").size(), plan.size());
  std::vector<std::string> evals = testing::ReadLines(options.run_dir + "/evals.jsonl");
  ASSERT_EQ(evals.size(), static_cast<size_t>(recipe.epochs));
  EXPECT_EQ(testing::JsonField(evals.back(), "step"), absl::StrCat(recipe.TotalSteps()));
  EXPECT_NE(testing::ReadFile(options.run_dir + "/recipe.yaml").find("optimizer"),
            std::string::npos);
  EXPECT_EQ(testing::JsonField(testing::ReadFile(options.run_dir + "/summary.json"), "state"),
            "FINISHED");
}

INSTANTIATE_TEST_SUITE_P(Runs, TrainingTest,
                         ::testing::Values(Case{"localsgd", 2}, Case{"localsgd", 3},
                                           Case{"sgd", 2}, Case{"localadamw", 2}),
                         CaseName);

}  // namespace
}  // namespace qsr
