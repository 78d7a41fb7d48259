// qsr-coordinator restarted on a state directory whose journal was damaged: a torn last entry is
// dropped and the run continues from the last complete one (the log says so); a damaged complete
// entry makes the coordinator refuse to start, naming the line and how to cut it off.
#include <signal.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/process_group.h"
#include "client/ops_client.h"
#include "common/recipe.h"
#include "coordinator/journal.h"
#include "gtest/gtest.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

const std::string kBin = QSR_BIN_DIR;

Recipe SmallRecipe() {
  Recipe r;
  r.model = "mlp";
  r.workers = 2;
  r.total_batch_size = 64;
  r.steps_per_epoch = 20;
  r.epochs = 2;
  r.max_lr = 0.05;
  r.warmup_steps = 2;
  r.alpha = 0.02;
  r.min_h = 2;
  r.init_h = 2;
  EXPECT_TRUE(ResolveRecipe(r).ok());
  return r;
}

// A journal as a coordinator leaves it after committing rounds 0..rounds-1 of generation 1.
void WriteJournal(const std::string& state_dir, const Recipe& recipe, int rounds) {
  Journal::Recovered recovered;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(state_dir, &recovered);
  ASSERT_TRUE(journal.ok()) << journal.status();
  v1::JournalEntry e;
  e.mutable_started()->set_run_id("torn");
  e.mutable_started()->set_recipe_yaml(RecipeToYaml(recipe));
  ASSERT_TRUE((*journal)->Append(e).ok());
  e.Clear();
  e.mutable_generation()->set_generation(1);
  e.mutable_generation()->add_members("w0");
  e.mutable_generation()->add_members("w1");
  ASSERT_TRUE((*journal)->Append(e).ok());
  for (int i = 0; i < rounds; ++i) {
    e.Clear();
    v1::RoundPlan* p = e.mutable_served();
    p->set_round(i);
    p->set_start_step(2 * i);
    p->set_h(2);
    ASSERT_TRUE((*journal)->Append(e).ok());
    e.Clear();
    v1::RoundRecord* r = e.mutable_committed();
    r->set_round(i);
    r->set_step(2 * i);
    r->set_h(2);
    r->set_workers(2);
    ASSERT_TRUE((*journal)->Append(e).ok());
  }
}

std::vector<std::string> CoordinatorArgv(const TempDir& dir) {
  return {kBin + "/qsr-coordinator",
          "--recipe",
          dir.path() + "/recipe.yaml",
          "--listen",
          "127.0.0.1:0",
          "--state-dir",
          dir.path() + "/state",
          "--port-file",
          dir.path() + "/port",
          "--survivor-wait",
          "60000ms"};
}

TEST(JournalRestartTest, ATornLastEntryIsDroppedAndTheRunContinuesFromTheLastCompleteOne) {
  TempDir dir;
  const Recipe recipe = SmallRecipe();
  WriteFile(dir.path() + "/recipe.yaml", RecipeToYaml(recipe));
  const std::string state = dir.path() + "/state";
  WriteJournal(state, recipe, 3);
  const std::string journal = state + "/journal.jsonl";
  const std::string whole = ReadFile(journal);
  // A crash in the middle of writing round 3's commit.
  WriteFile(journal, whole + "{\"committed\":{\"round\":\"3\",\"st");

  ProcessGroup coordinator;
  const std::string log = dir.path() + "/coordinator.log";
  std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>" + log};
  for (const std::string& a : CoordinatorArgv(dir)) argv.push_back(a);
  ASSERT_TRUE(coordinator.Spawn("coordinator", argv).ok());
  std::string port;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    coordinator.Pump(absl::Milliseconds(50));
    port = ReadFile(dir.path() + "/port");
    if (!port.empty() && port.back() == '\n') break;
    ASSERT_FALSE(coordinator.ExitCode(0).has_value()) << ReadFile(log);
  }
  ASSERT_TRUE(!port.empty() && port.back() == '\n') << ReadFile(log);
  port.pop_back();
  std::unique_ptr<OpsClient> ops = std::make_unique<OpsClient>("127.0.0.1:" + port);
  absl::StatusOr<v1::ListRoundsReply> rounds =
      ops->ListRounds(v1::ListRoundsRequest(), absl::Seconds(10));
  ASSERT_TRUE(rounds.ok()) << rounds.status();
  ASSERT_EQ(rounds->rounds_size(), 3);
  EXPECT_EQ(rounds->rounds(2).round(), 2);
  absl::StatusOr<v1::GetStatusReply> status = ops->GetStatus(absl::Seconds(10));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->round(), 3);
  EXPECT_EQ(status->run_id(), "torn");
  EXPECT_EQ(ReadFile(journal), whole) << "the torn tail is still in the journal";
  coordinator.Signal(0, SIGTERM);
  coordinator.TerminateAll(absl::Seconds(10));
  EXPECT_TRUE(absl::StrContains(ReadFile(log), "dropped a torn last entry")) << ReadFile(log);
}

TEST(JournalRestartTest, ADamagedCompleteEntryIsRefusedWithAClearMessage) {
  TempDir dir;
  const Recipe recipe = SmallRecipe();
  WriteFile(dir.path() + "/recipe.yaml", RecipeToYaml(recipe));
  const std::string state = dir.path() + "/state";
  WriteJournal(state, recipe, 3);
  const std::string journal = state + "/journal.jsonl";
  std::string contents = ReadFile(journal);
  // Round 2's commit says round 7: valid JSON, wrong checksum.
  const size_t at = contents.rfind("\"round\":\"2\"");
  ASSERT_NE(at, std::string::npos);
  contents[at + 9] = '7';
  WriteFile(journal, contents);
  std::vector<std::string> argv = CoordinatorArgv(dir);
  testing::CommandResult r = testing::RunCommand(argv, 30);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "it hung";
  EXPECT_LT(r.exit_code, 128) << "it crashed:\n" << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, journal + " line 8")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "checksum does not match")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "truncate -s")) << r.output;
  EXPECT_EQ(ReadFile(journal), contents) << "the journal was changed";
}

}  // namespace
}  // namespace qsr
