// The worker (RunTrainer) against FakeCoordinator, in one process: the rounds it trains and
// reports, a refused join, and regrouping when the coordinator ends a generation (through the
// NextRounds answer, or through a heartbeat while the worker trains), with workers as threads
// that meet through the fake's rendezvous store. Trains `mlp` on Fashion-MNIST.
#include "worker/trainer.h"

#include <cmath>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/recipe.h"
#include "gtest/gtest.h"
#include "tests/client/fake_coordinator.h"

namespace qsr {
namespace {

constexpr char kDataDir[] = "/usr/share/datasets/fashion-mnist";
constexpr int64_t kBatch = 32;

FakeRun MlpRun(int workers, int64_t h, int64_t rounds) {
  Recipe recipe;
  recipe.model = "mlp";
  recipe.optimizer = "localsgd";
  recipe.workers = workers;
  recipe.total_batch_size = kBatch;
  recipe.steps_per_epoch = 20;
  recipe.epochs = 20;
  recipe.max_lr = 0.05;
  recipe.seed = 3;
  recipe.init_model_by_seed = 5;
  recipe.data_dir = kDataDir;
  EXPECT_TRUE(ResolveRecipe(recipe).ok());
  FakeRun run;
  run.recipe_yaml = RecipeToYaml(recipe);
  run.h = h;
  run.rounds = rounds;
  run.rounds_per_batch = 2;
  return run;
}

TrainerOptions Options(const std::string& worker_id) {
  TrainerOptions options;
  options.worker_id = worker_id;
  options.threads = 1;
  options.connect_timeout = absl::Seconds(60);
  options.regroup_timeout = absl::Seconds(60);
  options.checkpoint_dir = ::testing::TempDir() + "/trainer_test_" + worker_id;
  return options;
}

// Runs one worker per id, each on its own thread, to the end.
std::vector<absl::StatusOr<TrainerResult>> RunWorkers(FakeCoordinator* fake,
                                                      const std::vector<std::string>& ids) {
  std::vector<absl::StatusOr<TrainerResult>> results(ids.size(), absl::UnknownError("did not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < ids.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = RunTrainer(fake, Options(ids[i])); });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kDataDir)) {
      FAIL() << "no Fashion-MNIST at " << kDataDir << ": install dataset-fashion-mnist";
    }
  }
};

TEST_F(TrainerTest, TrainsAndReportsEveryPlannedRound) {
  FakeRun run = MlpRun(1, 3, 4);
  run.eval_after = {3};
  FakeCoordinator fake(run);
  fake.AddGeneration(FakeGeneration{1});
  std::vector<absl::StatusOr<TrainerResult>> results = RunWorkers(&fake, {"a"});
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  EXPECT_EQ(results[0]->rank, 0);
  EXPECT_EQ(results[0]->rounds, 4);
  EXPECT_EQ(results[0]->steps, 12);
  EXPECT_EQ(results[0]->regroups, 0);

  std::vector<v1::RoundReport> rounds = fake.RoundsOf("a");
  ASSERT_EQ(rounds.size(), 4u);
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(rounds[r].round(), r);
    EXPECT_EQ(rounds[r].start_step(), 3 * r);
    EXPECT_EQ(rounds[r].h(), 3);
    EXPECT_EQ(rounds[r].samples(), 3 * kBatch);
    EXPECT_TRUE(std::isfinite(rounds[r].train_loss()) && rounds[r].train_loss() > 0)
        << rounds[r].train_loss();
    // Every local round ends with an average, so its report carries the model's digest.
    EXPECT_NE(rounds[r].params_digest(), 0u);
  }
  EXPECT_EQ(rounds[3].params_digest(), results[0]->params_hash);
  std::vector<v1::EvalReport> evals = fake.EvalsOf("a");
  ASSERT_EQ(evals.size(), 1u);
  EXPECT_EQ(evals[0].step(), 12);
  EXPECT_EQ(evals[0].examples(), 10000);
  EXPECT_GT(evals[0].test_acc(), 0.1);  // better than chance after 12 steps
  EXPECT_EQ(results[0]->test_acc, evals[0].test_acc());

  ASSERT_EQ(fake.leaves().size(), 1u);
  EXPECT_EQ(fake.leaves()[0].worker_id(), "a");
  EXPECT_EQ(fake.leaves()[0].error(), "");
  ASSERT_FALSE(fake.heartbeats().empty());
  EXPECT_EQ(fake.heartbeats()[0].worker_id(), "a");
  EXPECT_EQ(fake.heartbeats()[0].generation(), 1);
}

TEST_F(TrainerTest, ARefusedJoinIsAnErrorAndTrainsNothing) {
  FakeCoordinator fake(MlpRun(1, 2, 2));  // no generation to admit the worker to
  std::vector<absl::StatusOr<TrainerResult>> results = RunWorkers(&fake, {"a"});
  ASSERT_FALSE(results[0].ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(results[0].status())) << results[0].status();
  EXPECT_TRUE(absl::StrContains(results[0].status().message(), "refused")) << results[0].status();
  EXPECT_TRUE(fake.reports().empty());
}

// Each worker's reports: every round of the run once per generation it trained in, and the
// rounds of the second generation after those of the first.
void ExpectRegrouped(const FakeCoordinator& fake, const std::string& id, int64_t rounds,
                     const absl::StatusOr<TrainerResult>& result) {
  ASSERT_TRUE(result.ok()) << id << ": " << result.status();
  EXPECT_EQ(result->regroups, 1) << id;
  EXPECT_EQ(result->rounds, rounds) << id;
  std::vector<v1::RoundReport> reports = fake.RoundsOf(id);
  std::vector<int64_t> generations = fake.RoundGenerationsOf(id);
  ASSERT_EQ(reports.size(), static_cast<size_t>(rounds)) << id;
  int64_t first_of_second = -1;
  for (size_t i = 0; i < reports.size(); ++i) {
    EXPECT_EQ(reports[i].round(), static_cast<int64_t>(i)) << id;
    if (generations[i] == 2 && first_of_second < 0) first_of_second = reports[i].round();
    EXPECT_EQ(generations[i], first_of_second < 0 ? 1 : 2) << id << " round " << i;
  }
  // It joined again saying where its state stood: after the last round it reported.
  int joins = 0;
  for (const v1::JoinRequest& join : fake.joins()) {
    if (join.worker_id() != id || ++joins != 2) continue;
    EXPECT_EQ(join.next_round(), first_of_second < 0 ? rounds : first_of_second) << id;
    // The coordinator ended the generation: nothing to report as this worker's failure.
    EXPECT_EQ(join.failed_generation(), 0) << id;
  }
  EXPECT_GE(joins, 2) << id;
}

TEST_F(TrainerTest, RegroupsWithFreshRendezvousKeysWhenTheCoordinatorEndsTheGeneration) {
  FakeCoordinator fake(MlpRun(2, 2, 4));
  fake.AddGeneration(FakeGeneration{2, FakeGeneration::EndBy::kNextRounds, 2});
  fake.AddGeneration(FakeGeneration{2});
  std::vector<absl::StatusOr<TrainerResult>> results = RunWorkers(&fake, {"a", "b"});
  ExpectRegrouped(fake, "a", 4, results[0]);
  ExpectRegrouped(fake, "b", 4, results[1]);
  ASSERT_TRUE(results[0].ok() && results[1].ok());
  EXPECT_EQ(results[0]->params_hash, results[1]->params_hash);
  EXPECT_EQ(results[0]->rank, 0);
  EXPECT_EQ(results[1]->rank, 1);
  // The second group met under its own key prefix, not the first group's addresses.
  int first = 0, second = 0;
  for (const std::string& key : fake.kv_keys()) {
    if (absl::StartsWith(key, "fake/g1/c0/")) ++first;
    if (absl::StartsWith(key, "fake/g2/c0/")) ++second;
  }
  EXPECT_GT(first, 0);
  EXPECT_EQ(second, first);
  // Rounds 2 and 3 ran in the second generation on both.
  EXPECT_EQ(fake.RoundGenerationsOf("a"), std::vector<int64_t>({1, 1, 2, 2}));
  EXPECT_EQ(fake.RoundGenerationsOf("b"), std::vector<int64_t>({1, 1, 2, 2}));
}

TEST_F(TrainerTest, RegroupsWhenAHeartbeatEndsTheGenerationDuringARound) {
  // Rounds long enough that the heartbeat (every 20 ms) reaches the worker while it trains the
  // round that ends the generation; the worker stops it, returns to its last averaged state and
  // trains the rest in the next generation.
  FakeRun run = MlpRun(1, 40, 4);
  run.rounds_per_batch = 1;  // round 0 ends averaged before round 1 is handed out
  FakeCoordinator fake(run);
  fake.AddGeneration(FakeGeneration{1, FakeGeneration::EndBy::kHeartbeat, 1});
  fake.AddGeneration(FakeGeneration{1});
  std::vector<absl::StatusOr<TrainerResult>> results = RunWorkers(&fake, {"a"});
  ExpectRegrouped(fake, "a", 4, results[0]);
  ASSERT_EQ(fake.leaves().size(), 1u);
  EXPECT_EQ(fake.leaves()[0].generation(), 2);
  EXPECT_EQ(fake.leaves()[0].error(), "");
}

}  // namespace
}  // namespace qsr
