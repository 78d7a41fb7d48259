// SelfPlannedRounds on a RoundLedger (accepted, duplicate, gap, overlap, mismatch between
// members, past total_steps), and a RunController whose members plan their own rounds: their
// reports become committed rounds, NextRounds is refused, a Join that disagrees is refused, and
// the run finishes when every member has left.
#include "coordinator/self_planned_rounds.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "coordinator/run_controller.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/test_recipe.h"

namespace qsr {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

v1::RoundReport Round(int64_t round, int64_t start_step, int64_t h, double lr = 0.1) {
  v1::RoundReport r;
  r.set_round(round);
  r.set_start_step(start_step);
  r.set_h(h);
  r.set_lr(lr);
  r.set_train_loss(1.0);
  return r;
}

class SelfPlannedRoundsTest : public ::testing::Test {
 protected:
  absl::Status Report(const std::string& worker, const v1::RoundReport& r) {
    absl::Status s = rounds_.Accept(worker, r, /*members=*/2, ledger_);
    ledger_.CommitReady(1);
    return s;
  }
  // Both members report `r`.
  void Both(const v1::RoundReport& r) {
    ASSERT_TRUE(Report("a", r).ok());
    ASSERT_TRUE(Report("b", r).ok());
  }

  SelfPlannedRounds rounds_{/*total_steps=*/20};
  RoundLedger ledger_{RoundLedger::Options(), nullptr, nullptr};
};

TEST_F(SelfPlannedRoundsTest, CommitsARoundOnceEveryMemberReportedItWithItsLr) {
  ASSERT_TRUE(Report("a", Round(0, 0, 4, 0.05)).ok());
  EXPECT_TRUE(ledger_.committed().empty());  // b has not reported yet
  ASSERT_TRUE(Report("b", Round(0, 0, 4, 0.05)).ok());
  ASSERT_EQ(ledger_.committed().size(), 1u);
  EXPECT_EQ(ledger_.committed()[0].step(), 0);
  EXPECT_EQ(ledger_.committed()[0].h(), 4);
  EXPECT_DOUBLE_EQ(ledger_.committed()[0].lr(), 0.05);
  EXPECT_EQ(ledger_.committed()[0].workers(), 2);
  Both(Round(1, 4, 2));
  ASSERT_EQ(ledger_.committed().size(), 2u);
  EXPECT_EQ(ledger_.next_step(), 6);
}

TEST_F(SelfPlannedRoundsTest, DuplicatesChangeNothing) {
  ASSERT_TRUE(Report("a", Round(0, 0, 4)).ok());
  ASSERT_TRUE(Report("a", Round(0, 0, 4)).ok());  // pending: the same member again
  EXPECT_TRUE(ledger_.committed().empty());       // still waits for b
  ASSERT_TRUE(Report("b", Round(0, 0, 4)).ok());
  ASSERT_TRUE(Report("b", Round(0, 0, 4)).ok());  // committed: a retried report
  EXPECT_EQ(ledger_.committed().size(), 1u);
  EXPECT_EQ(ledger_.next_round(), 1);
}

TEST_F(SelfPlannedRoundsTest, RefusesAGapNamingTheNextRoundAndStep) {
  Both(Round(0, 0, 4));
  absl::Status skipped = Report("a", Round(2, 4, 2));
  EXPECT_TRUE(absl::IsInvalidArgument(skipped)) << skipped;
  EXPECT_THAT(std::string(skipped.message()), AllOf(HasSubstr("rounds.round"), HasSubstr("1")));
  absl::Status gap = Report("a", Round(1, 6, 2));
  EXPECT_TRUE(absl::IsInvalidArgument(gap)) << gap;
  EXPECT_THAT(std::string(gap.message()),
              AllOf(HasSubstr("rounds.start_step"), HasSubstr("gap"), HasSubstr("allowed: 4")));
  EXPECT_EQ(ledger_.next_round(), 1);
}

TEST_F(SelfPlannedRoundsTest, RefusesAnOverlap) {
  Both(Round(0, 0, 4));
  absl::Status overlap = Report("a", Round(1, 2, 2));
  EXPECT_TRUE(absl::IsInvalidArgument(overlap)) << overlap;
  EXPECT_THAT(std::string(overlap.message()),
              AllOf(HasSubstr("rounds.start_step"), HasSubstr("overlap")));
}

TEST_F(SelfPlannedRoundsTest, RefusesMembersThatDisagreeOnARoundsSteps) {
  ASSERT_TRUE(Report("a", Round(0, 0, 4)).ok());
  absl::Status pending = Report("b", Round(0, 0, 3));
  EXPECT_TRUE(absl::IsInvalidArgument(pending)) << pending;
  EXPECT_THAT(std::string(pending.message()), AllOf(HasSubstr("[0, 3)"), HasSubstr("[0, 4)")));
  ASSERT_TRUE(Report("b", Round(0, 0, 4)).ok());
  absl::Status committed = Report("b", Round(0, 0, 5));
  EXPECT_TRUE(absl::IsInvalidArgument(committed)) << committed;
  EXPECT_THAT(std::string(committed.message()), HasSubstr("committed"));
}

TEST_F(SelfPlannedRoundsTest, RefusesARoundPastTotalSteps) {
  Both(Round(0, 0, 16));
  absl::Status past = Report("a", Round(1, 16, 8));
  EXPECT_TRUE(absl::IsInvalidArgument(past)) << past;
  EXPECT_THAT(std::string(past.message()), AllOf(HasSubstr("rounds.h"), HasSubstr("20")));
  Both(Round(1, 16, 4));  // ends exactly at total_steps
  EXPECT_EQ(ledger_.committed().size(), 2u);
}

TEST_F(SelfPlannedRoundsTest, TheFirstRoundMayStartLaterButNotEarlier) {
  RoundLedger::Options options;
  options.start_step = 4;
  RoundLedger resumed(options, nullptr, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(rounds_.Accept("a", Round(0, 2, 2), 1, resumed)));
  EXPECT_TRUE(rounds_.Accept("a", Round(0, 8, 2), 1, resumed).ok());
  EXPECT_EQ(resumed.next_step(), 10);
}

TEST(SelfPlannedModeTest, TheFirstJoinDecidesAndNextRoundsIsRefused) {
  SelfPlannedRounds rounds(0);
  EXPECT_FALSE(rounds.active());
  EXPECT_TRUE(rounds.CheckNextRounds().ok());
  ASSERT_TRUE(rounds.NoteJoin(true).ok());
  EXPECT_TRUE(rounds.active());
  EXPECT_TRUE(rounds.NoteJoin(true).ok());
  absl::Status mixed = rounds.NoteJoin(false);
  EXPECT_TRUE(absl::IsFailedPrecondition(mixed)) << mixed;
  EXPECT_THAT(std::string(mixed.message()), HasSubstr("self-planned"));
  absl::Status next = rounds.CheckNextRounds();
  EXPECT_TRUE(absl::IsFailedPrecondition(next)) << next;
  EXPECT_THAT(std::string(next.message()), HasSubstr("self_planned"));
}

// Two library members on a RunController.
class SelfPlannedRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RunController::Options options;
    options.run_id = "lib";
    options.heartbeat_timeout = absl::Seconds(60);  // these tests send no heartbeats
    controller_ = std::make_unique<RunController>(testing::SmallQsrRecipe(2), options, nullptr);
    std::vector<std::optional<v1::JoinReply>> got(2);
    for (int i = 0; i < 2; ++i) {
      v1::JoinRequest join;
      join.set_worker_id(Id(i));
      join.set_self_planned(true);
      ASSERT_TRUE(controller_
                      ->Join(join, now_, now_ + absl::Seconds(60),
                             [&got, i](const v1::JoinReply& r) { got[i] = r; })
                      .ok());
    }
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(got[i].has_value());
      ASSERT_EQ(got[i]->outcome().code(), v1::Outcome::OK) << got[i]->outcome().message();
      ASSERT_EQ(got[i]->rank(), i);
      generation_ = got[i]->generation();
    }
  }
  static std::string Id(int rank) { return "lib-" + std::to_string(rank); }
  absl::Status Report(int rank, const v1::RoundReport& r) {
    v1::ReportRequest report;
    report.set_worker_id(Id(rank));
    report.set_rank(rank);
    report.set_generation(generation_);
    *report.add_rounds() = r;
    return controller_->Report(report, now_).status();
  }
  absl::Status Leave(int rank) {
    v1::LeaveRequest leave;
    leave.set_worker_id(Id(rank));
    leave.set_rank(rank);
    leave.set_generation(generation_);
    return controller_->Leave(leave, now_).status();
  }

  absl::Time now_ = absl::Now();
  int64_t generation_ = 0;
  std::unique_ptr<RunController> controller_;
};

TEST_F(SelfPlannedRunTest, ReportedRoundsAreCommittedAndTheRunFinishesWhenAllLeave) {
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(Report(rank, Round(0, 0, 3, 0.02)).ok());
    ASSERT_TRUE(Report(rank, Round(1, 3, 5, 0.04)).ok());
  }
  v1::ListRoundsReply rounds = controller_->Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(rounds.rounds_size(), 2);
  EXPECT_EQ(rounds.rounds(1).step(), 3);
  EXPECT_EQ(rounds.rounds(1).h(), 5);
  EXPECT_DOUBLE_EQ(rounds.rounds(1).lr(), 0.04);
  EXPECT_EQ(controller_->Status(now_).step(), 8);
  ASSERT_TRUE(Leave(0).ok());
  EXPECT_FALSE(controller_->Done());  // rank 1 is still training
  ASSERT_TRUE(Leave(1).ok());
  EXPECT_TRUE(controller_->Done());
  EXPECT_FALSE(controller_->Failed());
  EXPECT_EQ(controller_->Status(now_).state(), "FINISHED");
}

TEST_F(SelfPlannedRunTest, NextRoundsAndACoordinatorPlannedJoinAreRefused) {
  v1::NextRoundsRequest next;
  next.set_worker_id(Id(0));
  next.set_generation(generation_);
  bool answered = false;
  absl::Status s = controller_->NextRounds(
      next, now_, [&answered](const v1::NextRoundsReply&) { answered = true; });
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_FALSE(answered);
  v1::JoinRequest worker;
  worker.set_worker_id("qsr-worker");
  absl::StatusOr<v1::JoinReply> joined = controller_->JoinNow(worker, now_);
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->outcome().code(), v1::Outcome::REJECTED);
  EXPECT_THAT(joined->outcome().message(), HasSubstr("self-planned"));
}

TEST_F(SelfPlannedRunTest, ABadReportIsRefusedAndTheRoundStaysOut) {
  absl::Status s = Report(0, Round(1, 0, 4));
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_EQ(controller_->Rounds(v1::ListRoundsRequest()).rounds_size(), 0);
}

// A report whose last round is refused (past the recipe's 60 steps): the rounds before it that
// every member reported are committed all the same.
TEST_F(SelfPlannedRunTest, TheRoundsBeforeARefusedOneAreCommitted) {
  for (int rank = 0; rank < 2; ++rank) {
    v1::ReportRequest report;
    report.set_worker_id(Id(rank));
    report.set_rank(rank);
    report.set_generation(generation_);
    *report.add_rounds() = Round(0, 0, 56);
    *report.add_rounds() = Round(1, 56, 8);
    absl::Status s = controller_->Report(report, now_).status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
    EXPECT_THAT(std::string(s.message()), AllOf(HasSubstr("rounds.h"), HasSubstr("60")));
  }
  v1::ListRoundsReply rounds = controller_->Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(rounds.rounds_size(), 1);
  EXPECT_EQ(rounds.rounds(0).h(), 56);
}

}  // namespace
}  // namespace qsr
