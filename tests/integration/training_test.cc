// End to end on loopback: an in-process coordinator (OS-chosen port) and real qsr-worker
// processes training `mlp` on a slice of Fashion-MNIST.
#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "agent/host_agent.h"
#include "checkpoint/checkpoint_manifest.h"
#include "common/round_planner.h"
#include "coordinator/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/integration/run_to_end.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

constexpr char kDataDir[] = "/usr/share/datasets/fashion-mnist";

struct Case {
  std::string optimizer;
  int workers;
  std::string sync_precision = "fp32";
  // The workers reach the coordinator through one host agent (qsr-agent), as on one host.
  bool via_agent = false;
  // sync_overlap (with avg_m / avg_v for Adam, so that the moments' sync overlaps too).
  double overlap = 0;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return absl::StrCat(
      info.param.optimizer, "_", info.param.workers, "workers",
      info.param.sync_precision == "fp32" ? "" : "_" + info.param.sync_precision,
      info.param.via_agent ? "_via_agent" : "",
      info.param.overlap > 0 ? absl::StrCat("_overlap", info.param.overlap * 100) : "");
}

// Floats in the `mlp` for 28x28 inputs and 10 classes (784-512-512-10, with biases).
constexpr int64_t kMlpParams = 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10;

class TrainingTest : public ::testing::TestWithParam<Case> {};

TEST_P(TrainingTest, TrainsTheCoordinatorsPlanWithIdenticalModels) {
  if (!std::filesystem::exists(kDataDir))
    FAIL() << "no Fashion-MNIST at " << kDataDir << ": install dataset-fashion-mnist";
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
  recipe.sync_precision = c.sync_precision;
  recipe.sync_overlap = c.overlap;
  recipe.avg_m = recipe.avg_v = c.overlap > 0 && adam;
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
  std::unique_ptr<HostAgent> agent;
  if (c.via_agent) {
    HostAgent::Options agent_options;
    agent_options.coordinator = (*server)->address();
    absl::StatusOr<std::unique_ptr<HostAgent>> started = HostAgent::Start(agent_options);
    ASSERT_TRUE(started.ok()) << started.status();
    agent = std::move(*started);
  }

  const std::vector<std::optional<int>> codes =
      testing::RunWorkers(QSR_WORKER_BIN, agent ? agent->address() : (*server)->address(),
                          c.workers, absl::Seconds(240));
  for (size_t i = 0; i < codes.size(); ++i) {
    ASSERT_EQ(codes[i], 0) << "worker " << i
                           << " (nullopt: did not start, or did not finish within the deadline)";
  }
  ASSERT_TRUE((*server)->AwaitDone(absl::Now() + absl::Seconds(10)));

  // The rounds trained are exactly the plan `qsrctl plan` prints for this recipe.
  std::vector<Round> plan = RoundPlanner(recipe).Plan();
  v1::ListRoundsReply rounds = (*server)->controller().Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(rounds.rounds_size(), static_cast<int>(plan.size()));
  const double fp32_sync = 2.0 * (c.workers - 1) / c.workers * kMlpParams * 4;
  const double share = c.sync_precision == "bf16" ? 0.5 : 1.0;
  double total_bytes = 0;
  int checked = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const v1::RoundRecord& r = rounds.rounds(static_cast<int>(i));
    total_bytes += static_cast<double>(r.bytes());
    EXPECT_EQ(r.round(), plan[i].index);
    EXPECT_EQ(r.step(), plan[i].start_step);
    EXPECT_EQ(r.h(), plan[i].h);
    EXPECT_DOUBLE_EQ(r.lr(), plan[i].lr);
    EXPECT_EQ(r.workers(), c.workers);
    // Every worker reported the same parameter digest after the round's averaging (with
    // sync_overlap: after the rounds that evaluate, the only ones that report a digest).
    EXPECT_TRUE(r.identical()) << "round " << r.round();
    checked += r.digest_checked() ? 1 : 0;
    if (c.workers > 1 && c.optimizer == "localsgd" && c.overlap == 0) {
      EXPECT_GT(r.bytes(), 0);
      // A ring all-reduce of the model sends 2(n-1)/n of it; bf16 syncs send half of that
      // (evaluation rounds add a little for the accuracy sums).
      EXPECT_GE(r.bytes(), 0.99 * share * fp32_sync) << "round " << r.round();
      EXPECT_LE(r.bytes(), 1.02 * share * fp32_sync) << "round " << r.round();
    }
  }
  // Local methods compare after every round's averaging; data-parallel training (whose
  // BatchNorm statistics are averaged only to evaluate) and overlapped syncs (which settle only
  // where the model is looked at) after the rounds that evaluate, one per epoch, the last one
  // among them.
  const bool local = c.optimizer == "localsgd" || c.optimizer == "localadamw";
  EXPECT_EQ(checked, local && c.overlap == 0 ? static_cast<int>(plan.size()) : recipe.epochs);
  EXPECT_TRUE(rounds.rounds(rounds.rounds_size() - 1).digest_checked());
  if (c.optimizer == "sgd") {
    for (const Round& r : plan) EXPECT_EQ(r.h, 1);
  }
  if (c.overlap > 0 && c.workers > 1) {
    // A round's overlapped sync completes during the next one, so its bytes count there; over
    // the run every round sent one sync (Adam's also its two moments, as large as the model),
    // and the evaluations their accuracy sums.
    const double per_round = (adam ? 3.0 : share) * fp32_sync;
    EXPECT_GE(total_bytes, 0.99 * per_round * plan.size());
    EXPECT_LE(total_bytes, 1.02 * per_round * plan.size());
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
  if (agent) {
    // The barrier went up once per host, not once per worker (a group split by a slow machine
    // past the agent's window still leaves far fewer calls).
    const AgentService::Stats stats = agent->stats();
    EXPECT_GT(stats.barrier_calls, 0);
    EXPECT_LE(stats.upstream_barrier_calls * 2, stats.barrier_calls)
        << stats.upstream_barrier_calls << " upstream for " << stats.barrier_calls << " local";
    // The workers' reports went up in batches, each acknowledged (every round above committed
    // with all workers' reports), and no more often than they were sent.
    EXPECT_GT(stats.local_reports, 0);
    EXPECT_GT(stats.upstream_report_batches, 0);
    EXPECT_LE(stats.upstream_report_batches, stats.local_reports);
  }
}

INSTANTIATE_TEST_SUITE_P(Runs, TrainingTest,
                         ::testing::Values(Case{"localsgd", 2}, Case{"localsgd", 3}, Case{"sgd", 2},
                                           Case{"localadamw", 2}, Case{"localsgd", 3, "bf16"},
                                           Case{"localsgd", 3, "fp32", true},
                                           Case{"localsgd", 3, "bf16", false, 0.5},
                                           Case{"localadamw", 2, "fp32", false, 1.0}),
                         CaseName);

}  // namespace
}  // namespace qsr

namespace qsr {
namespace {

std::unique_ptr<CoordinatorServer> RunToEnd(const Recipe& recipe, const std::string& run_dir,
                                            const std::string& checkpoint_dir) {
  testing::RunToEndOptions run;
  run.worker_bin = QSR_WORKER_BIN;
  run.worker_args = {"--checkpoint-dir", checkpoint_dir};
  return testing::RunToEnd(recipe, run_dir, run);
}

// The authors' options on a BatchNorm model: label smoothing, clipping, group_weight, BN
// re-estimation, evaluation at the start, post-local SGD and checkpoints; then a resume from
// the epoch-1 checkpoint continues the same plan.
TEST(TrainingOptionsTest, PostLocalWithCheckpointsThenResume) {
  if (!std::filesystem::exists(kDataDir))
    FAIL() << "no Fashion-MNIST at " << kDataDir << ": install dataset-fashion-mnist";
  Recipe recipe;
  recipe.model = "cnn";
  recipe.optimizer = "localsgd";
  recipe.workers = 2;
  recipe.total_batch_size = 32;
  recipe.steps_per_epoch = 12;
  recipe.epochs = 3;
  recipe.max_lr = 0.05;
  recipe.min_lr = 0.0;
  recipe.warmup_steps = 2;
  recipe.alpha = 0.02;
  recipe.post_local_epoch = 1;
  recipe.label_smoothing = 0.1;
  recipe.gradient_clipping = 5.0;
  recipe.group_weight = true;
  recipe.wd = 1e-4;
  recipe.bn = true;
  recipe.bn_batches = 4;
  recipe.eval_on_start = true;
  recipe.save_freq = 1;
  recipe.save_opt = true;
  recipe.multiple_optimizers = true;
  recipe.eval_batch_size = 2000;
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  testing::TempDir dir;
  const std::string ckpt = dir.path() + "/ckpt";
  std::unique_ptr<CoordinatorServer> first = RunToEnd(recipe, dir.path() + "/run1", ckpt);
  ASSERT_NE(first, nullptr);
  v1::ListRoundsReply rounds = first->controller().Rounds(v1::ListRoundsRequest());
  std::vector<Round> plan = RoundPlanner(recipe).Plan();
  ASSERT_EQ(rounds.rounds_size(), static_cast<int>(plan.size()));
  // Workers report a digest after every local round's averaging and after the data-parallel
  // rounds that evaluate (BatchNorm statistics averaged): the coordinator compared exactly those.
  int checked = 0;
  int want_checked = 0;
  for (const Round& r : plan) {
    const bool evaluates =
        r.end_step() / recipe.steps_per_epoch != r.start_step / recipe.steps_per_epoch ||
        &r == &plan.back();
    want_checked += !r.data_parallel || evaluates ? 1 : 0;
  }
  for (const v1::RoundRecord& r : rounds.rounds()) {
    EXPECT_TRUE(r.identical()) << "round " << r.round();
    checked += r.digest_checked() ? 1 : 0;
    if (r.step() < 12) {
      EXPECT_EQ(r.h(), 1) << "data-parallel before post_local_epoch";
    }
  }
  EXPECT_EQ(checked, want_checked);
  EXPECT_GT(checked, 0);
  // One evaluation at the start and one per epoch, with top-5 accuracy.
  std::vector<std::string> evals = testing::ReadLines(dir.path() + "/run1/evals.jsonl");
  ASSERT_EQ(evals.size(), 4u);
  EXPECT_EQ(testing::JsonField(evals[0], "step"), "0");
  EXPECT_GE(std::stod(testing::JsonField(evals.back(), "test_acc5")),
            std::stod(testing::JsonField(evals.back(), "test_acc")));
  // One committed checkpoint per epoch (the round that ends it), with the authors' file names,
  // each rank's optimizer state, and a manifest that verifies.
  int committed = 0;
  for (const Round& r : plan) {
    const int64_t epoch = r.end_step() / 12;
    if (epoch == r.start_step / 12 && r.end_step() != recipe.TotalSteps()) continue;
    const std::string folder = CheckpointStepDir(ckpt, r.end_step());
    absl::StatusOr<CheckpointManifest> m = VerifyCheckpoint(folder + "/MANIFEST.json");
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->round, r.index);
    EXPECT_EQ(m->h, r.h);
    EXPECT_EQ(m->world_size, 2);
    EXPECT_TRUE(m->per_rank);
    EXPECT_TRUE(std::filesystem::exists(
        absl::StrCat(folder, "/model_step=", r.end_step(), "-epoch=", epoch, ".pt")));
    for (int rank = 0; rank < 2; ++rank) {
      EXPECT_TRUE(std::filesystem::exists(absl::StrCat(folder, "/opt_step=", r.end_step(),
                                                       "-epoch=", epoch, "/rank=", rank, ".pt")));
    }
    ++committed;
  }
  EXPECT_EQ(committed, 3);

  // Resume from the end of epoch 1 (data-parallel until then: a round ends at step 12): the
  // rounds after it are the original plan's.
  Recipe resumed = recipe;
  resumed.eval_on_start = false;
  resumed.save_freq = 0;
  resumed.resume = CheckpointStepDir(ckpt, 12);
  ASSERT_TRUE(ResolveRecipe(resumed).ok());
  ASSERT_TRUE(ApplyResume(resumed, "").ok());
  EXPECT_EQ(resumed.resume_from_step, 12);
  std::unique_ptr<CoordinatorServer> second = RunToEnd(resumed, dir.path() + "/run2", ckpt);
  ASSERT_NE(second, nullptr);
  v1::ListRoundsReply after = second->controller().Rounds(v1::ListRoundsRequest());
  ASSERT_GT(after.rounds_size(), 0);
  EXPECT_EQ(after.rounds(0).step(), 12);
  std::vector<Round> rest;
  for (const Round& r : plan) {
    if (r.start_step >= 12) rest.push_back(r);
  }
  ASSERT_EQ(after.rounds_size(), static_cast<int>(rest.size()));
  for (size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(after.rounds(static_cast<int>(i)).round(), rest[i].index);
    EXPECT_EQ(after.rounds(static_cast<int>(i)).h(), rest[i].h);
  }
  EXPECT_EQ(second->controller().Status(absl::Now()).state(), "FINISHED");

  // A corrupt checkpoint is reported by name and fails the run instead of training from scratch.
  testing::WriteFile(dir.path() + "/bad.pt", "not a checkpoint");
  Recipe corrupt = resumed;
  corrupt.resume = "";
  corrupt.resume_pth = dir.path() + "/bad.pt";
  corrupt.workers = 1;  // the one worker started below forms the group on its own
  CoordinatorServer::Options options;
  options.run.run_id = "bad";
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(corrupt, options);
  ASSERT_TRUE(server.ok());
  testing::CommandResult r = testing::RunCommand(
      {QSR_WORKER_BIN, "--coordinator", (*server)->address(), "--threads", "1"}, 120);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("bad.pt"), std::string::npos) << r.output;
}

// Resuming continues the same run exactly. A run trains 2 of the schedule's 3 epochs
// (epochs < epochs_for_sche, as the authors' resume scripts) and commits checkpoints; the
// resumed run (resume: latest) must train the same rounds as an uninterrupted run and end with
// the same parameters, optimizer state and evaluation. Then the newest checkpoint is corrupted:
// resuming names the bad file, uses the previous one, and still ends identical.
TEST(ResumeTest, ResumedRunEqualsUninterruptedRun) {
  // A small CIFAR-10-format set: 400 examples (an epoch uses 384), 50 for a quick evaluation.
  testing::TempDir dir;
  testing::WriteCifar10(dir.path() + "/data", 80, 50, 11);
  Recipe recipe;
  recipe.dataset = "cifar10";  // random crops and flips: the augmentation must resume too
  recipe.data_dir = dir.path() + "/data";
  recipe.model = "cnn";  // BatchNorm: running statistics must resume too
  recipe.optimizer = "localsgd";
  recipe.workers = 2;
  recipe.total_batch_size = 32;
  recipe.steps_per_epoch = 12;
  recipe.epochs = 3;
  recipe.epochs_for_sche = 3;
  recipe.max_lr = 0.05;
  recipe.min_lr = 0.02;
  recipe.warmup_steps = 2;
  recipe.alpha = 0.04;  // QSR: H grows from min_h = 2 to 4 as the LR decays
  recipe.min_h = 2;
  recipe.init_h = 2;
  recipe.wd = 1e-4;
  recipe.seed = 3;
  recipe.init_model_by_seed = 5;
  recipe.save_freq = 1;
  recipe.save_opt = true;
  recipe.eval_batch_size = 25;
  Recipe full = recipe;
  full.checkpoint_dir = dir.path() + "/ckpt_full";
  ASSERT_TRUE(ResolveRecipe(full).ok());
  const std::vector<Round> plan = RoundPlanner(full).Plan();
  // The interruption point (step 24) must be a round boundary of the full plan.
  ASSERT_TRUE(
      std::any_of(plan.begin(), plan.end(), [](const Round& r) { return r.end_step() == 24; }));
  std::unique_ptr<CoordinatorServer> a = RunToEnd(full, dir.path() + "/a", full.checkpoint_dir);
  ASSERT_NE(a, nullptr);

  const std::string ckpt = dir.path() + "/ckpt";
  Recipe part = recipe;
  part.epochs = 2;
  part.checkpoint_dir = ckpt;
  ASSERT_TRUE(ResolveRecipe(part).ok());
  ASSERT_NE(RunToEnd(part, dir.path() + "/b1", ckpt), nullptr);

  // Rounds from `from_step` on, and the final evaluation, equal the uninterrupted run's.
  auto expect_same_ending = [&](CoordinatorServer& server, const std::string& run_dir,
                                int64_t from_step, const std::string& final_ckpt_dir) {
    v1::ListRoundsReply want = a->controller().Rounds(v1::ListRoundsRequest());
    v1::ListRoundsReply got = server.controller().Rounds(v1::ListRoundsRequest());
    std::vector<v1::RoundRecord> tail;
    for (const v1::RoundRecord& r : want.rounds()) {
      if (r.step() >= from_step) tail.push_back(r);
    }
    ASSERT_EQ(got.rounds_size(), static_cast<int>(tail.size()));
    for (size_t i = 0; i < tail.size(); ++i) {
      const v1::RoundRecord& g = got.rounds(static_cast<int>(i));
      EXPECT_EQ(g.round(), tail[i].round());
      EXPECT_EQ(g.step(), tail[i].step());
      EXPECT_EQ(g.h(), tail[i].h());
      EXPECT_DOUBLE_EQ(g.lr(), tail[i].lr());
      // The same data, LR and state give bit-identical losses.
      EXPECT_EQ(g.train_loss(), tail[i].train_loss()) << "round " << g.round();
    }
    const std::string last_want = testing::ReadLines(dir.path() + "/a/evals.jsonl").back();
    const std::string last_got = testing::ReadLines(run_dir + "/evals.jsonl").back();
    EXPECT_EQ(testing::JsonField(last_got, "step"), "36");
    EXPECT_EQ(testing::JsonField(last_got, "test_loss"),
              testing::JsonField(last_want, "test_loss"));
    EXPECT_EQ(testing::JsonField(last_got, "test_acc"), testing::JsonField(last_want, "test_acc"));
    // The final model (parameters and BatchNorm buffers), byte for byte. (Optimizer archives
    // key their state by tensor addresses, so their bytes differ between processes; the
    // bit-identical losses above are what shows that the optimizer state resumed.)
    const std::string model = absl::StrCat("/model_step=36-epoch=3.pt");
    const std::string want_model =
        testing::ReadFile(CheckpointStepDir(full.checkpoint_dir, 36) + model);
    ASSERT_GT(want_model.size(), 1000u);
    EXPECT_TRUE(testing::ReadFile(CheckpointStepDir(final_ckpt_dir, 36) + model) == want_model)
        << "the final models differ";
    EXPECT_TRUE(VerifyCheckpoint(CheckpointStepDir(final_ckpt_dir, 36) + "/MANIFEST.json").ok());
  };

  Recipe resumed = recipe;
  resumed.checkpoint_dir = ckpt;
  resumed.resume = "latest";
  ASSERT_TRUE(ResolveRecipe(resumed).ok());
  absl::StatusOr<ChosenCheckpoint> chosen = ApplyResume(resumed, "");
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(chosen->manifest.step, 24);
  EXPECT_TRUE(chosen->skipped.empty());
  std::unique_ptr<CoordinatorServer> b2 = RunToEnd(resumed, dir.path() + "/b2", ckpt);
  ASSERT_NE(b2, nullptr);
  expect_same_ending(*b2, dir.path() + "/b2", 24, ckpt);

  // Corrupt the step-24 checkpoint (one flipped byte in rank 1's optimizer state); the finished
  // run's step-36 checkpoint cannot be resumed (nothing left to train), so it goes too.
  std::filesystem::remove_all(CheckpointStepDir(ckpt, 36));
  const std::string victim = CheckpointStepDir(ckpt, 24) + "/opt_step=24-epoch=2/rank=1.pt";
  std::string bytes = testing::ReadFile(victim);
  ASSERT_GT(bytes.size(), 100u);
  bytes[bytes.size() / 2] ^= 0x5a;
  testing::WriteFile(victim, bytes);
  Recipe fallback = recipe;
  fallback.checkpoint_dir = ckpt;
  fallback.resume = "latest";
  ASSERT_TRUE(ResolveRecipe(fallback).ok());
  chosen = ApplyResume(fallback, "");
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  ASSERT_EQ(chosen->skipped.size(), 1u);
  EXPECT_NE(chosen->skipped[0].find("opt_step=24-epoch=2/rank=1.pt"), std::string::npos)
      << chosen->skipped[0];
  const int64_t previous = chosen->manifest.step;
  EXPECT_GE(previous, 12);
  EXPECT_LT(previous, 24);
  std::unique_ptr<CoordinatorServer> b3 = RunToEnd(fallback, dir.path() + "/b3", ckpt);
  ASSERT_NE(b3, nullptr);
  expect_same_ending(*b3, dir.path() + "/b3", previous, ckpt);
}

}  // namespace
}  // namespace qsr
