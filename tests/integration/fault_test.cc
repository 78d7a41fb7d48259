// Faults injected into real runs on loopback: an in-process coordinator with short liveness
// deadlines and qsr-worker processes training `mlp` on a slice of Fashion-MNIST. A worker is
// killed (SIGKILL), replaced, or stopped (SIGSTOP) in the middle of the run; the run must still
// train every round of the plan exactly once, with identical models after every averaging round.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/process_group.h"
#include "client/ops_client.h"
#include "common/round_planner.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/journal.h"
#include "gtest/gtest.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

constexpr char kDataDir[] = "/usr/share/datasets/fashion-mnist";

Recipe FaultRecipe(int workers, int min_workers, int max_workers) {
  Recipe r;
  r.model = "mlp";
  r.optimizer = "localsgd";
  r.workers = workers;
  r.min_workers = min_workers;
  r.max_workers = max_workers;
  r.total_batch_size = 96;
  r.steps_per_epoch = 50;
  r.epochs = 4;
  r.max_lr = 0.05;
  r.min_lr = 0.0;
  r.warmup_steps = 4;
  r.alpha = 0.02;
  r.min_h = 2;
  r.init_h = 2;
  r.seed = 3;
  r.init_model_by_seed = 5;
  return r;
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kDataDir))
      FAIL() << "no Fashion-MNIST at " << kDataDir << ": install dataset-fashion-mnist";
  }

  // `journal_dir`: where the coordinator keeps its journal (none when empty).
  void Start(Recipe recipe, const std::string& name, const std::string& journal_dir = "") {
    ASSERT_TRUE(ResolveRecipe(recipe).ok());
    recipe_ = recipe;
    CoordinatorServer::Options options;
    options.run_dir = dir_.path() + "/" + name;
    options.run.run_id = name;
    options.run.rendezvous_timeout = absl::Seconds(30);
    options.run.plan_batch_steps = 2;
    options.run.heartbeat_interval = absl::Milliseconds(200);
    options.run.heartbeat_timeout = absl::Seconds(2);
    options.run.regroup_timeout = absl::Seconds(4);
    options.run.replacement_timeout = absl::Seconds(60);
    if (!journal_dir.empty()) {
      absl::StatusOr<std::unique_ptr<Journal>> journal =
          Journal::Open(journal_dir, &options.recovered);
      ASSERT_TRUE(journal.ok()) << journal.status();
      options.journal = std::move(*journal);
    }
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
        CoordinatorServer::Start(recipe, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    run_dir_ = options.run_dir;
  }

  // `env`: NAME=VALUE settings for this worker only (through env(1)).
  int Spawn(const std::string& worker_id, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv;
    if (!env.empty()) {
      argv.push_back("/usr/bin/env");
      argv.insert(argv.end(), env.begin(), env.end());
    }
    for (const std::string& arg :
         {std::string(QSR_WORKER_BIN), std::string("--coordinator"), server_->address(),
          std::string("--threads"), std::string("1"), std::string("--worker-id"), worker_id,
          std::string("--rejoin-timeout"), std::string("60s")}) {
      argv.push_back(arg);
    }
    absl::StatusOr<int> i = workers_.Spawn(worker_id, argv);
    EXPECT_TRUE(i.ok()) << i.status();
    return i.value_or(-1);
  }

  v1::GetStatusReply Status() { return server_->controller().Status(absl::Now()); }

  // Pumps the workers' output until `done` or the deadline; returns done().
  bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!done() && absl::Now() < deadline) workers_.Pump(absl::Milliseconds(20));
    return done();
  }

  // Waits for the run's end and checks what every fault test must: the plan trained exactly
  // once (up to where the operator stopped it, when `stopped`) and the workers agreeing after
  // every averaging round. Returns the final accuracy.
  double ExpectCompleteRun(bool stopped = false) {
    EXPECT_TRUE(WaitFor([&] { return workers_.AllExited(); }, absl::Seconds(240)))
        << "workers did not finish within the deadline";
    EXPECT_TRUE(server_->AwaitDone(absl::Now() + absl::Seconds(20)));
    v1::GetStatusReply status = Status();
    EXPECT_EQ(status.state(), "FINISHED") << status.message();
    std::vector<Round> plan = RoundPlanner(recipe_).Plan();
    v1::ListRoundsReply rounds = server_->controller().Rounds(v1::ListRoundsRequest());
    if (stopped) {
      EXPECT_EQ(status.message(), "stopped by operator");
      EXPECT_GT(rounds.rounds_size(), 0);
      EXPECT_LT(rounds.rounds_size(), static_cast<int>(plan.size()));
      plan.resize(std::min<size_t>(plan.size(), rounds.rounds_size()));
    }
    EXPECT_EQ(rounds.rounds_size(), static_cast<int>(plan.size()));
    int checked = 0;
    for (int i = 0; i < std::min<int>(rounds.rounds_size(), plan.size()); ++i) {
      EXPECT_EQ(rounds.rounds(i).round(), plan[i].index);
      EXPECT_EQ(rounds.rounds(i).step(), plan[i].start_step);
      EXPECT_EQ(rounds.rounds(i).h(), plan[i].h);
      EXPECT_TRUE(rounds.rounds(i).identical()) << "round " << i;
      // Local SGD averages (and so compares digests) after every round, whoever is left;
      // overlapped syncs settle, and are compared, only where the model is evaluated.
      if (recipe_.sync_overlap == 0) {
        EXPECT_TRUE(rounds.rounds(i).digest_checked()) << "round " << i;
      }
      checked += rounds.rounds(i).digest_checked() ? 1 : 0;
    }
    // One evaluation per epoch at least (a stopped run: fewer epochs, but one compared round).
    EXPECT_GE(checked, stopped ? 1 : static_cast<int>(recipe_.epochs));
    // rounds.jsonl: one line per round, no gap, no duplicate.
    std::vector<std::string> lines = testing::ReadLines(run_dir_ + "/rounds.jsonl");
    EXPECT_EQ(lines.size(), plan.size());
    for (size_t i = 0; i < lines.size(); ++i) {
      EXPECT_EQ(testing::JsonField(lines[i], "round"), absl::StrCat(i));
    }
    return status.test_acc();
  }

  testing::TempDir dir_;
  Recipe recipe_;
  std::unique_ptr<CoordinatorServer> server_;
  std::string run_dir_;
  ProcessGroup workers_;
};

TEST_F(FaultTest, KillingOneOfThreeWorkersMidRunLosesNothing) {
  // The undisturbed run, for the accuracy to compare with.
  double undisturbed = 0;
  {
    Start(FaultRecipe(3, 1, 3), "calm");
    for (int i = 0; i < 3; ++i) Spawn(absl::StrCat("calm-", i));
    undisturbed = ExpectCompleteRun();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(workers_.ExitCode(i), 0);
    server_.reset();
  }
  Start(FaultRecipe(3, 1, 3), "killed");
  const int first = workers_.size();
  for (int i = 0; i < 3; ++i) Spawn(absl::StrCat("w", i));
  ASSERT_TRUE(WaitFor([&] { return Status().round() >= 10; }, absl::Seconds(120)));
  workers_.Signal(first + 2, SIGKILL);
  const double acc = ExpectCompleteRun();
  EXPECT_EQ(workers_.ExitCode(first), 0);
  EXPECT_EQ(workers_.ExitCode(first + 1), 0);
  EXPECT_EQ(workers_.ExitCode(first + 2), 128 + SIGKILL);
  v1::GetStatusReply status = Status();
  EXPECT_GE(status.failures(), 1);
  EXPECT_GE(status.generation(), 2);
  EXPECT_EQ(status.world_size(), 2);
  EXPECT_NEAR(acc, undisturbed, 0.01) << "killed run " << acc << ", undisturbed " << undisturbed;
}

// With sync_overlap a worker is almost always inside a round while its last sync travels: the
// survivors abandon that sync (their communicator aborted), return to their snapshots and go on
// in the next generation, and the rounds that evaluate still end identical.
TEST_F(FaultTest, KillingAWorkerWhileOverlappedSyncsTravelLosesNothing) {
  Recipe recipe = FaultRecipe(3, 1, 3);
  recipe.sync_overlap = 0.5;
  Start(recipe, "overlap");
  for (int i = 0; i < 3; ++i) Spawn(absl::StrCat("o", i));
  ASSERT_TRUE(WaitFor([&] { return Status().round() >= 10; }, absl::Seconds(120)));
  workers_.Signal(2, SIGKILL);
  const double acc = ExpectCompleteRun();
  EXPECT_EQ(workers_.ExitCode(0), 0);
  EXPECT_EQ(workers_.ExitCode(1), 0);
  EXPECT_EQ(workers_.ExitCode(2), 128 + SIGKILL);
  v1::GetStatusReply status = Status();
  EXPECT_GE(status.failures(), 1);
  EXPECT_GE(status.generation(), 2);
  EXPECT_EQ(status.world_size(), 2);
  EXPECT_GT(acc, 0.7) << "far below the ~0.83 this run reaches (chance is 0.1)";
}

TEST_F(FaultTest, AReplacementJoinsAtARoundBoundaryAndEndsIdentical) {
  // min_workers 2: after the kill the survivor waits for the replacement.
  Start(FaultRecipe(2, 2, 2), "replaced");
  Spawn("w0");
  Spawn("w1");
  ASSERT_TRUE(WaitFor([&] { return Status().round() >= 10; }, absl::Seconds(120)));
  workers_.Signal(1, SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return Status().state() == "REGROUPING"; }, absl::Seconds(30)));
  Spawn("replacement");
  ExpectCompleteRun();
  EXPECT_EQ(workers_.ExitCode(0), 0);
  EXPECT_EQ(workers_.ExitCode(2), 0);
  v1::GetStatusReply status = Status();
  EXPECT_EQ(status.world_size(), 2);
  // The last rounds were averaged by both, with identical parameters (checked every round).
  v1::ListRoundsReply rounds = server_->controller().Rounds(v1::ListRoundsRequest());
  ASSERT_GT(rounds.rounds_size(), 0);
  EXPECT_EQ(rounds.rounds(rounds.rounds_size() - 1).workers(), 2);
}

TEST_F(FaultTest, AStoppedWorkerIsEvictedAndRejoinsAfterItResumes) {
  // A plan far longer than the test needs, ended by the operator's Stop once the worker is back:
  // how much of the plan the others train while it is away depends on the machine's speed (on
  // a fast one they finished a 200-step plan before it was readmitted).
  Recipe recipe = FaultRecipe(3, 1, 3);
  recipe.epochs = 400;
  Start(recipe, "stopped");
  for (int i = 0; i < 3; ++i) Spawn(absl::StrCat("w", i));
  ASSERT_TRUE(WaitFor([&] { return Status().round() >= 6; }, absl::Seconds(120)));
  workers_.Signal(2, SIGSTOP);
  // Past the heartbeat timeout it is evicted, and the others go on without it.
  ASSERT_TRUE(WaitFor([&] { return Status().generation() >= 2 && Status().workers() == 2; },
                      absl::Seconds(30)));
  const int64_t evicted_at = Status().round();
  const int64_t generation = Status().generation();
  ASSERT_TRUE(WaitFor([&] { return Status().round() >= evicted_at + 4; }, absl::Seconds(60)));
  workers_.Signal(2, SIGCONT);
  // It learns that its generation ended, joins again and is admitted at a round boundary.
  ASSERT_TRUE(WaitFor(
      [&] {
        v1::GetStatusReply s = Status();
        return s.generation() > generation && s.workers() == 3;
      },
      absl::Seconds(60)));
  const int64_t back_at = Status().round();
  ASSERT_TRUE(WaitFor([&] { return Status().round() >= back_at + 4; }, absl::Seconds(60)));
  v1::StopRequest stop;
  stop.set_reason("test");
  ASSERT_EQ(server_->controller().Stop(stop).outcome().code(), v1::Outcome::OK);
  ExpectCompleteRun(/*stopped=*/true);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(workers_.ExitCode(i), 0) << "worker " << i;
  // It trained with the others again: the rounds since its return were averaged by all three.
  v1::ListRoundsReply rounds = server_->controller().Rounds(v1::ListRoundsRequest());
  ASSERT_GT(rounds.rounds_size(), back_at + 4);
  for (int64_t i = back_at + 1; i < rounds.rounds_size(); ++i) {
    EXPECT_EQ(rounds.rounds(static_cast<int>(i)).workers(), 3) << "round " << i;
  }
}

TEST_F(FaultTest, ACoordinatorKilledAndRestartedOnItsStateDirFinishesTheRun) {
  Recipe recipe = FaultRecipe(2, 1, 2);
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  recipe_ = recipe;
  const std::string recipe_file = dir_.path() + "/recipe.yaml";
  testing::WriteFile(recipe_file, RecipeToYaml(recipe));
  const std::string state_dir = dir_.path() + "/state";
  run_dir_ = state_dir;
  const std::string port_file = dir_.path() + "/port";
  auto coordinator_argv = [&](const std::string& listen) {
    return std::vector<std::string>{QSR_COORDINATOR_BIN,
                                    "--recipe",
                                    recipe_file,
                                    "--listen",
                                    listen,
                                    "--state-dir",
                                    state_dir,
                                    "--port-file",
                                    port_file,
                                    "--plan-batch-steps",
                                    "2",
                                    "--heartbeat-interval",
                                    "200ms",
                                    "--heartbeat-timeout",
                                    "2000ms",
                                    "--survivor-wait",
                                    "4000ms"};
  };
  ProcessGroup coordinators;
  ASSERT_TRUE(coordinators.Spawn("coord", coordinator_argv("127.0.0.1:0")).ok());
  std::string port;
  auto port_written = [&] {
    coordinators.Pump(absl::Milliseconds(20));
    port = testing::ReadFile(port_file);
    return !port.empty() && port.back() == '\n';
  };
  ASSERT_TRUE(WaitFor(port_written, absl::Seconds(30)));
  port.pop_back();
  const std::string address = "127.0.0.1:" + port;
  OpsClient client(address);
  auto round = [&]() -> int64_t {
    coordinators.Pump(absl::ZeroDuration());
    absl::StatusOr<v1::GetStatusReply> s = client.GetStatus(absl::Seconds(2));
    return s.ok() ? s->round() : -1;
  };
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(
        workers_
            .Spawn(absl::StrCat("w", i), {QSR_WORKER_BIN, "--coordinator", address, "--threads",
                                          "1", "--worker-id", absl::StrCat("w", i)})
            .ok());
  }
  ASSERT_TRUE(WaitFor([&] { return round() >= 10; }, absl::Seconds(120)));
  coordinators.Signal(0, SIGKILL);
  ASSERT_TRUE(WaitFor(
      [&] {
        coordinators.Pump(absl::Milliseconds(20));
        return coordinators.ExitCode(0).has_value();
      },
      absl::Seconds(10)));
  // Restarted on the same address and state dir, it continues the run.
  ASSERT_TRUE(coordinators.Spawn("coord2", coordinator_argv(address)).ok());
  ASSERT_TRUE(WaitFor([&] { return workers_.AllExited(); }, absl::Seconds(240)));
  for (int i = 0; i < 2; ++i) EXPECT_EQ(workers_.ExitCode(i), 0) << "worker " << i;
  ASSERT_TRUE(WaitFor(
      [&] {
        coordinators.Pump(absl::Milliseconds(20));
        return coordinators.ExitCode(1).has_value();
      },
      absl::Seconds(30)));
  EXPECT_EQ(coordinators.ExitCode(1), 0);
  // Every round of the plan is in rounds.jsonl exactly once.
  std::vector<Round> plan = RoundPlanner(recipe).Plan();
  std::vector<std::string> lines = testing::ReadLines(state_dir + "/rounds.jsonl");
  ASSERT_EQ(lines.size(), plan.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(testing::JsonField(lines[i], "round"), absl::StrCat(i));
    EXPECT_EQ(testing::JsonField(lines[i], "h"), absl::StrCat(plan[i].h));
  }
  EXPECT_EQ(testing::JsonField(testing::ReadFile(state_dir + "/summary.json"), "state"),
            "FINISHED");
}

// A worker killed inside an averaging all-reduce, deterministically: the test hook
// (worker/comm/collective_fault_hook.h) makes w2 raise SIGKILL on itself at the first reduction
// of round 8's ring all-reduce, after it sent part of its data. The survivors' collective fails
// (their peer's connections closed), they regroup from their round-7 state, replay round 8
// without it, and the run trains every round exactly once.
TEST_F(FaultTest, AWorkerKilledInsideTheAllReduceLosesNoRound) {
  constexpr int kRound = 8;
  const std::string journal_dir = dir_.path() + "/in_collective_state";
  Start(FaultRecipe(3, 1, 3), "in_collective", journal_dir);
  Spawn("w0");
  Spawn("w1");
  Spawn("w2", {absl::StrCat("QSR_TEST_STOP_IN_COLLECTIVE=round:", kRound)});
  ASSERT_TRUE(WaitFor([&] { return workers_.ExitCode(2).has_value(); }, absl::Seconds(120)));
  // The survivors abandon the collective within its deadline (the rendezvous timeout, 30 s):
  // the next generation forms before a timed-out collective could have returned.
  EXPECT_TRUE(WaitFor([&] { return Status().generation() >= 2; }, absl::Seconds(29)))
      << "no new generation within the collective's timeout";
  ExpectCompleteRun();
  EXPECT_EQ(workers_.ExitCode(0), 0);
  EXPECT_EQ(workers_.ExitCode(1), 0);
  EXPECT_EQ(workers_.ExitCode(2), 128 + SIGKILL) << "the hook did not fire";
  v1::GetStatusReply status = Status();
  EXPECT_EQ(status.failures(), 1);
  EXPECT_EQ(status.generation(), 2);
  EXPECT_EQ(status.world_size(), 2);
  // The survivors came back ready for round 8, their round-7 state: the first round the
  // coordinator served to generation 2 (its journal says) is the one interrupted in its
  // collective. From there the two survivors trained every round, each committed once with
  // identical models (checked above).
  server_.reset();  // closes the journal
  std::vector<std::string> entries = testing::ReadLines(journal_dir + "/journal.jsonl");
  auto second = std::find_if(entries.begin(), entries.end(), [](const std::string& e) {
    return e.find("\"generation\":{\"generation\":\"2\"") != std::string::npos;
  });
  ASSERT_NE(second, entries.end());
  auto served = std::find_if(second, entries.end(),
                             [](const std::string& e) { return e.find("{\"served\":") == 0; });
  ASSERT_NE(served, entries.end());
  EXPECT_NE(served->find(absl::StrCat("\"round\":\"", kRound, "\"")), std::string::npos) << *served;
  std::vector<std::string> lines = testing::ReadLines(run_dir_ + "/rounds.jsonl");
  ASSERT_GT(static_cast<int>(lines.size()), kRound);
  for (int i = 0; i < static_cast<int>(lines.size()); ++i) {
    if (i >= kRound) {
      EXPECT_EQ(testing::JsonField(lines[i], "workers"), "2") << "round " << i;
    }
    EXPECT_EQ(testing::JsonField(lines[i], "digest_checked"), "true") << "round " << i;
  }
}

}  // namespace
}  // namespace qsr
