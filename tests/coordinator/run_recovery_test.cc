// How a starting coordinator chooses its run: fresh, continued from a journal (also one whose run
// ended, and one with a torn tail), and what a damaged journal or a bad resume does.
#include "coordinator/run_recovery.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "coordinator/run_controller.h"
#include "gtest/gtest.h"
#include "tests/coordinator/test_recipe.h"

namespace qsr {
namespace {

class RunRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/recovery_" + std::to_string(absl::ToUnixNanos(absl::Now()));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A journal in dir_/state of run "journaled" with `recipe`, one committed round and, when
  // `end_state` is set, its end.
  void WriteJournal(const Recipe& recipe, const std::string& end_state = "") {
    Journal::Recovered none;
    absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(state(), &none);
    ASSERT_TRUE(journal.ok()) << journal.status();
    v1::JournalEntry started;
    started.mutable_started()->set_run_id("journaled");
    started.mutable_started()->set_recipe_yaml(RecipeToYaml(recipe));
    ASSERT_TRUE((*journal)->Append(started).ok());
    v1::JournalEntry generation;
    generation.mutable_generation()->set_generation(1);
    generation.mutable_generation()->add_members("w0");
    ASSERT_TRUE((*journal)->Append(generation).ok());
    v1::JournalEntry committed;
    committed.mutable_committed()->set_round(0);
    committed.mutable_committed()->set_step(0);
    committed.mutable_committed()->set_h(2);
    ASSERT_TRUE((*journal)->Append(committed).ok());
    if (!end_state.empty()) {
      v1::JournalEntry ended;
      ended.mutable_ended()->set_state(end_state);
      ended.mutable_ended()->set_message("done");
      ASSERT_TRUE((*journal)->Append(ended).ok());
    }
  }
  std::string state() const { return dir_ + "/state"; }
  std::string journal_path() const { return state() + "/journal.jsonl"; }

  std::string dir_;
};

TEST_F(RunRecoveryTest, WithoutAStateDirARunStartsFreshUnderRuns) {
  absl::StatusOr<RunStart> start =
      ChooseRunStart(testing::SmallQsrRecipe(2), RunStartFlags{}, "default-id");
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->run_id, "default-id");
  EXPECT_EQ(start->run_dir, "runs/default-id");
  EXPECT_EQ(start->journal, nullptr);
  EXPECT_FALSE(start->recovered.exists);
  EXPECT_EQ(start->recipe.checkpoint_dir, "runs/default-id/checkpoints");
  EXPECT_TRUE(start->resumed_from.empty());
  EXPECT_TRUE(start->warnings.empty());
}

TEST_F(RunRecoveryTest, AnEmptyStateDirStartsAFreshRunWithItsJournalThere) {
  absl::StatusOr<RunStart> start =
      ChooseRunStart(testing::SmallQsrRecipe(2), RunStartFlags{state(), "mine", ""}, "default");
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->run_id, "mine");
  EXPECT_EQ(start->run_dir, state());  // the run directory defaults to the state dir
  ASSERT_NE(start->journal, nullptr);
  EXPECT_EQ(start->journal->path(), journal_path());
  EXPECT_FALSE(start->recovered.exists);
  // --run-dir wins over the state dir.
  start = ChooseRunStart(testing::SmallQsrRecipe(2), RunStartFlags{state(), "", dir_ + "/run"},
                         "default");
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->run_dir, dir_ + "/run");
  EXPECT_EQ(start->recipe.checkpoint_dir, dir_ + "/run/checkpoints");
}

TEST_F(RunRecoveryTest, AJournalsRunContinuesWithItsNameAndRecipe) {
  Recipe journaled = testing::SmallQsrRecipe(2);
  journaled.checkpoint_dir = state() + "/checkpoints";
  WriteJournal(journaled);
  // The same --recipe: no warning.
  absl::StatusOr<RunStart> start =
      ChooseRunStart(testing::SmallQsrRecipe(2), RunStartFlags{state(), "other", ""}, "default");
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_TRUE(start->recovered.exists);
  EXPECT_EQ(start->run_id, "journaled");
  EXPECT_EQ(start->recovered.committed.size(), 1u);
  EXPECT_FALSE(start->recovered.ended);
  EXPECT_TRUE(start->warnings.empty()) << start->warnings[0];
  start.value().journal.reset();  // one writer at a time

  // A changed --recipe: the journal's wins, and the log says so.
  Recipe changed = testing::SmallQsrRecipe(2);
  changed.epochs = 7;
  ASSERT_TRUE(ResolveRecipe(changed).ok());
  start = ChooseRunStart(changed, RunStartFlags{state(), "", ""}, "default");
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->recipe.epochs, 3);
  ASSERT_EQ(start->warnings.size(), 1u);
  EXPECT_TRUE(absl::StrContains(start->warnings[0], "--recipe differs")) << start->warnings[0];
}

TEST_F(RunRecoveryTest, AFinishedJournalContinuesAsAnEndedRun) {
  Recipe recipe = testing::SmallQsrRecipe(1);
  WriteJournal(recipe, "FINISHED");
  absl::StatusOr<RunStart> start = ChooseRunStart(recipe, RunStartFlags{state(), "", ""}, "d");
  ASSERT_TRUE(start.ok()) << start.status();
  ASSERT_TRUE(start->recovered.exists);
  EXPECT_TRUE(start->recovered.ended);
  // The controller built from it is done: it answers status as the run that finished and lets
  // no worker in.
  RunController::Options options;
  options.run_id = start->run_id;
  RunController controller(start->recipe, options, nullptr,
                           std::shared_ptr<Journal>(std::move(start->journal)), start->recovered);
  EXPECT_TRUE(controller.Done());
  EXPECT_EQ(controller.Status(absl::Now()).state(), "FINISHED");
  EXPECT_EQ(controller.Status(absl::Now()).round(), 1);
  v1::JoinRequest join;
  join.set_worker_id("late");
  absl::StatusOr<v1::JoinReply> reply = controller.JoinNow(join, absl::Now());
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->outcome().code(), v1::Outcome::RUN_FINISHED);
}

TEST_F(RunRecoveryTest, ATornJournalTailIsDroppedAndTheRunContinues) {
  Recipe recipe = testing::SmallQsrRecipe(2);
  WriteJournal(recipe);
  const auto whole = std::filesystem::file_size(journal_path());
  std::ofstream(journal_path(), std::ios::app) << "{\"committed\":{\"round\":1";  // a crash
  absl::StatusOr<RunStart> start = ChooseRunStart(recipe, RunStartFlags{state(), "", ""}, "d");
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_TRUE(start->recovered.exists);
  EXPECT_EQ(start->recovered.committed.size(), 1u);
  EXPECT_FALSE(start->recovered.repair.empty());
  EXPECT_EQ(std::filesystem::file_size(journal_path()), whole);
}

TEST_F(RunRecoveryTest, ADamagedCompleteEntryIsRefusedNamingTheJournal) {
  Recipe recipe = testing::SmallQsrRecipe(2);
  WriteJournal(recipe);
  std::ofstream(journal_path(), std::ios::app) << "not an entry\n";
  absl::StatusOr<RunStart> start = ChooseRunStart(recipe, RunStartFlags{state(), "", ""}, "d");
  ASSERT_FALSE(start.ok());
  EXPECT_TRUE(absl::IsDataLoss(start.status())) << start.status();
  EXPECT_TRUE(absl::StrContains(start.status().message(), journal_path())) << start.status();
}

TEST_F(RunRecoveryTest, ResumingFromAMissingCheckpointIsAnError) {
  Recipe recipe = testing::SmallQsrRecipe(2);
  recipe.resume = "latest";
  absl::StatusOr<RunStart> start =
      ChooseRunStart(recipe, RunStartFlags{"", "r", dir_ + "/run"}, "d");
  ASSERT_FALSE(start.ok());
  EXPECT_TRUE(absl::StrContains(start.status().message(), dir_ + "/run/checkpoints"))
      << start.status();
}

}  // namespace
}  // namespace qsr
