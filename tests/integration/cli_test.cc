// The command-line tools against a live coordinator process on an OS-chosen loopback port.
#include <csignal>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/process_group.h"
#include "common/recipe.h"
#include "common/round_planner.h"
#include "gtest/gtest.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

const std::string kBin = QSR_BIN_DIR;
const std::string kRecipe =
    std::string(QSR_SOURCE_DIR) + "/recipes/fashion-mnist/cnn-localsgd-qsr.yaml";

TEST(CliTest, StatusJsonShowsALiveCoordinator) {
  testing::TempDir dir;
  const std::string port_file = dir.path() + "/port";
  ProcessGroup coordinator;
  ASSERT_TRUE(coordinator
                  .Spawn("coord", {kBin + "/qsr-coordinator", "--recipe", kRecipe, "--listen",
                                   "127.0.0.1:0", "--port-file", port_file, "--run-dir",
                                   dir.path() + "/run", "--workers", "4", "--epochs", "2"})
                  .ok());
  std::string port;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (port.empty() && absl::Now() < deadline && !coordinator.ExitCode(0)) {
    coordinator.Pump(absl::Milliseconds(50));
    port = testing::ReadFile(port_file);
  }
  ASSERT_FALSE(port.empty()) << "the coordinator did not write its port";
  port.erase(port.find_last_not_of("\n") + 1);
  const std::string address = "127.0.0.1:" + port;

  testing::CommandResult status =
      testing::RunCommand({kBin + "/qsrctl", "--coordinator", address, "status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  const std::string& json = status.output;
  for (const char* field :
       {"state", "step", "total_steps", "epoch", "round", "lr", "h", "workers"}) {
    EXPECT_FALSE(testing::JsonField(json, field).empty()) << field << " missing in " << json;
  }
  EXPECT_EQ(testing::JsonField(json, "state"), "WAITING");
  EXPECT_EQ(testing::JsonField(json, "workers"), "0");
  EXPECT_EQ(testing::JsonField(json, "world_size"), "4");
  EXPECT_EQ(testing::JsonField(json, "total_steps"), "936");  // 2 epochs x 468 steps

  testing::CommandResult table =
      testing::RunCommand({kBin + "/qsrctl", "--coordinator", address, "status"});
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find("WAITING"), std::string::npos);

  testing::CommandResult rounds =
      testing::RunCommand({kBin + "/qsrctl", "--coordinator", address, "rounds", "--json"});
  EXPECT_EQ(rounds.exit_code, 0) << rounds.output;
  EXPECT_TRUE(rounds.output.empty()) << "no round has completed yet: " << rounds.output;
  coordinator.TerminateAll(absl::Seconds(5));
}

// qsr-agent relays a host's calls: qsrctl reaches the run through it, and the agent exits 0 on
// SIGTERM.
TEST(CliTest, QsrctlReachesTheRunThroughQsrAgent) {
  testing::TempDir dir;
  ProcessGroup group;
  const std::string coord_port_file = dir.path() + "/coord.port";
  const std::string agent_port_file = dir.path() + "/agent.port";
  ASSERT_TRUE(group
                  .Spawn("coord", {kBin + "/qsr-coordinator", "--recipe", kRecipe, "--listen",
                                   "127.0.0.1:0", "--port-file", coord_port_file, "--run-dir",
                                   dir.path() + "/run", "--workers", "2", "--epochs", "1"})
                  .ok());
  auto await_port = [&](const std::string& file) {
    std::string port;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (port.empty() && absl::Now() < deadline) {
      group.Pump(absl::Milliseconds(50));
      port = testing::ReadFile(file);
    }
    port.erase(port.find_last_not_of("\n") + 1);
    return port;
  };
  const std::string coord_port = await_port(coord_port_file);
  ASSERT_FALSE(coord_port.empty()) << "the coordinator did not write its port";
  absl::StatusOr<int> agent =
      group.Spawn("agent", {kBin + "/qsr-agent", "--coordinator", "127.0.0.1:" + coord_port,
                            "--listen", "127.0.0.1:0", "--port-file", agent_port_file});
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::string agent_port = await_port(agent_port_file);
  ASSERT_FALSE(agent_port.empty()) << "the agent did not write its port";

  testing::CommandResult status = testing::RunCommand(
      {kBin + "/qsrctl", "--coordinator", "127.0.0.1:" + agent_port, "status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_EQ(testing::JsonField(status.output, "state"), "WAITING") << status.output;

  group.Signal(*agent, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!group.ExitCode(*agent).has_value() && absl::Now() < deadline) {
    group.Pump(absl::Milliseconds(50));
  }
  EXPECT_EQ(group.ExitCode(*agent), 0);
}

TEST(CliTest, QsrAgentRefusesANonLocalListenAddress) {
  testing::CommandResult r = testing::RunCommand(
      {kBin + "/qsr-agent", "--coordinator", "127.0.0.1:1", "--listen", "0.0.0.0:0"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("is not local; allowed"), std::string::npos) << r.output;
  r = testing::RunCommand({kBin + "/qsr-agent", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--coordinator"), std::string::npos) << r.output;
}

// A launcher waits for the port file; a server that cannot write it must say so and exit, not
// serve on a port nobody learns.
TEST(CliTest, ServersExitTwoNamingAPortFileTheyCannotWrite) {
  testing::TempDir dir;
  const std::string port_file = dir.path() + "/no-such-dir/port";
  testing::CommandResult r = testing::RunCommand(
      {kBin + "/qsr-coordinator", "--recipe", kRecipe, "--listen", "127.0.0.1:0", "--port-file",
       port_file, "--run-dir", dir.path() + "/run", "--workers", "2", "--epochs", "1"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cannot write the port file " + port_file), std::string::npos)
      << r.output;
  // Port 1 on loopback: nothing listens there; the agent serves without its coordinator.
  r = testing::RunCommand({kBin + "/qsr-agent", "--coordinator", "127.0.0.1:1", "--listen",
                           "127.0.0.1:0", "--port-file", port_file});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cannot write the port file " + port_file), std::string::npos)
      << r.output;
}

TEST(CliTest, StatusNamesAnUnreachableCoordinator) {
  // Port 1 on loopback: nothing listens there.
  testing::CommandResult r =
      testing::RunCommand({kBin + "/qsrctl", "--coordinator", "127.0.0.1:1", "status"}, 30);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("127.0.0.1:1"), std::string::npos) << r.output;
}

TEST(CliTest, PlanJsonMatchesThePlanner) {
  testing::CommandResult r = testing::RunCommand(
      {kBin + "/qsrctl", "plan", "--recipe", kRecipe, "--epochs", "2", "--alpha=0.3", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> lines = absl::StrSplit(r.output, '\n', absl::SkipEmpty());
  absl::StatusOr<Recipe> recipe = LoadRecipeFile(kRecipe);
  ASSERT_TRUE(recipe.ok());
  recipe->epochs = 2;
  recipe->alpha = 0.3;
  ASSERT_TRUE(ResolveRecipe(*recipe).ok());
  std::vector<Round> plan = RoundPlanner(*recipe).Plan();
  ASSERT_EQ(lines.size(), plan.size() + 1);  // one per round, then the summary
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(testing::JsonField(lines[i], "round"), absl::StrCat(plan[i].index));
    EXPECT_EQ(testing::JsonField(lines[i], "step"), absl::StrCat(plan[i].start_step));
    EXPECT_EQ(testing::JsonField(lines[i], "h"), absl::StrCat(plan[i].h));
    // The rounds the coordinator will have evaluated and checkpointed.
    EXPECT_EQ(testing::JsonField(lines[i], "eval_after"), plan[i].eval_after ? "true" : "false");
    EXPECT_EQ(testing::JsonField(lines[i], "checkpoint_after"),
              plan[i].checkpoint_after ? "true" : "false");
  }
  EXPECT_EQ(testing::JsonField(lines.back(), "rounds"), absl::StrCat(plan.size()));
  EXPECT_EQ(testing::JsonField(lines.back(), "total_steps"), "936");
}

TEST(CliTest, BadHeapPolicyExitsTwoNamingTheChoices) {
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{kBin + "/qsr-worker", "--heap", "reuse"},
        std::vector<std::string>{kBin + "/qsr-run", "--recipe", kRecipe, "--heap", "reuse"}}) {
    testing::CommandResult r = testing::RunCommand(argv, 30);
    EXPECT_EQ(r.exit_code, 2) << argv[0] << ": " << r.output;
    EXPECT_NE(r.output.find("'reuse' is not one of: keep"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("system"), std::string::npos) << r.output;
  }
}

// Refused before anything starts: the worker's own check would come only after the coordinator.
TEST(CliTest, NonPositiveSnapshotIntervalExitsTwoNamingTheFlag) {
  for (const std::string every : {"0", "-1", "inf", "nan"}) {
    for (const std::vector<std::string>& argv :
         {std::vector<std::string>{kBin + "/qsr-worker", "--snapshot-dir", "/tmp/qsr-snapshots",
                                   "--snapshot-every", every},
          std::vector<std::string>{kBin + "/qsr-run", "--recipe", kRecipe, "--snapshot-dir",
                                   "/tmp/qsr-snapshots", "--snapshot-every", every}}) {
      testing::CommandResult r = testing::RunCommand(argv, 30);
      EXPECT_EQ(r.exit_code, 2) << argv[0] << ": " << r.output;
      EXPECT_NE(r.output.find("--snapshot-every"), std::string::npos) << r.output;
      EXPECT_NE(r.output.find("finite number above 0"), std::string::npos) << r.output;
      EXPECT_EQ(r.output.find("coordinator at"), std::string::npos) << r.output;
    }
  }
}

TEST(CliTest, MalformedRecipeExitsNonZeroNamingTheKey) {
  testing::TempDir dir;
  const std::string bad = dir.path() + "/bad.yaml";
  testing::WriteFile(bad, "model: cnn\nmax_lrr: 0.1\n");
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{kBin + "/qsr-coordinator", "--recipe", bad, "--listen",
                                 "127.0.0.1:0"},
        std::vector<std::string>{kBin + "/qsrctl", "plan", "--recipe", bad},
        std::vector<std::string>{kBin + "/qsr-run", "--recipe", bad}}) {
    testing::CommandResult r = testing::RunCommand(argv, 30);
    EXPECT_NE(r.exit_code, 0) << argv[0];
    EXPECT_NE(r.output.find("max_lrr"), std::string::npos) << argv[0] << ": " << r.output;
  }
  testing::WriteFile(bad, "model: cnn\nmax_lr: fast\n");
  testing::CommandResult r = testing::RunCommand({kBin + "/qsrctl", "plan", "--recipe", bad}, 30);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("max_lr"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("fast"), std::string::npos) << r.output;

  r = testing::RunCommand({kBin + "/qsrctl", "plan", "--recipe", kRecipe, "--min-lr", "1"}, 30);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("min_lr"), std::string::npos) << r.output;
  r = testing::RunCommand({kBin + "/qsrctl", "plan", "--recipe", kRecipe, "--workers", "3"}, 30);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("total_batch_size"), std::string::npos) << r.output;
  r = testing::RunCommand({kBin + "/qsr-coordinator", "--recipe", kRecipe, "--bogus-flag"}, 30);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("bogus-flag"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qsr

namespace qsr {
namespace {

TEST(CliTest, EveryShippedRecipePlans) {
  int count = 0;
  std::set<std::string> folders;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(std::string(QSR_SOURCE_DIR) + "/recipes")) {
    if (entry.path().extension() != ".yaml") continue;
    ++count;
    folders.insert(entry.path().parent_path().filename().string());
    testing::CommandResult r = testing::RunCommand(
        {kBin + "/qsrctl", "plan", "--recipe", entry.path().string(), "--json"});
    EXPECT_EQ(r.exit_code, 0) << entry.path() << ": " << r.output;
    EXPECT_NE(r.output.find("\"summary\":true"), std::string::npos) << entry.path();
  }
  // Every subfolder is planned: Fashion-MNIST, the authors' ImageNet runs and the CIFAR-size ones.
  EXPECT_GE(count, 16);
  for (const char* folder : {"fashion-mnist", "imagenet", "cifar10"}) {
    EXPECT_EQ(folders.count(folder), 1u) << "no recipes in recipes/" << folder;
  }
}

}  // namespace
}  // namespace qsr

namespace qsr {
namespace {

TEST(CliTest, QsrRunRejectsABadDeviceBeforeStartingAnything) {
  testing::TempDir dir;
  // CUDA_VISIBLE_DEVICES fixes how many GPUs qsr-run counts, whatever this machine has.
  struct Case {
    std::string visible, device, expected;
  };
  for (const Case& c : std::vector<Case>{{"0,1", "cuda:0,cuda:0", "named twice"},
                                         {"0,1", "gpu", "unknown device"},
                                         {"0,1", "cuda:0", "names 1 devices for 2 workers"},
                                         {"", "cuda", "2 workers need 2 GPUs, but 0 GPUs"}}) {
    testing::CommandResult r = testing::RunCommand(
        {"/usr/bin/env", "CUDA_VISIBLE_DEVICES=" + c.visible, kBin + "/qsr-run", "--recipe",
         kRecipe, "--workers", "2", "--run-dir", dir.path() + "/run", "--device", c.device},
        30);
    EXPECT_EQ(r.exit_code, 2) << c.device << ": " << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.device << ": " << r.output;
    EXPECT_NE(r.output.find("allowed: cpu, cuda"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir.path() + "/run")) << c.device;
  }
}

TEST(CliTest, QsrRunFailsWhenAWorkerFails) {
  testing::TempDir dir;
  testing::CommandResult r = testing::RunCommand(
      {kBin + "/qsr-run", "--recipe", kRecipe, "--workers", "2", "--run-dir", dir.path() + "/run",
       "--data-dir", dir.path() + "/no-such-data", "--progress", "1s"},
      120);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 124) << "qsr-run did not stop by itself: " << r.output;
  EXPECT_NE(r.output.find("no-such-data"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("FAILED"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qsr

namespace qsr {
namespace {

TEST(CliTest, PlanFindsAlphaForASyncBudget) {
  testing::CommandResult r = testing::RunCommand(
      {kBin + "/qsrctl", "plan", "--recipe", kRecipe, "--sync-budget", "0.1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> lines = absl::StrSplit(r.output, '\n', absl::SkipEmpty());
  const std::string& summary = lines.back();
  EXPECT_LE(std::stod(testing::JsonField(summary, "sync_share")), 0.1) << summary;
  EXPECT_GT(std::stod(testing::JsonField(summary, "alpha")), 0.0) << summary;
  // An unreachable budget says so.
  r = testing::RunCommand({kBin + "/qsrctl", "plan", "--recipe", kRecipe, "--sync-budget", "0.01"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("cannot be met"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qsr
