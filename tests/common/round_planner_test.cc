#include "common/round_planner.h"

#include <cstdint>
#include <vector>

#include "common/recipe.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

// Cosine + QSR: 10 epochs of 100 steps, 100 warmup steps.
Recipe QsrRecipe() {
  Recipe r;
  r.optimizer = "localsgd";
  r.scheduler = "cosine";
  r.max_lr = 0.1;
  r.min_lr = 0.001;
  r.alpha = 0.02;
  r.power = 2;
  r.min_h = 2;
  r.init_h = 4;
  r.epochs = 10;
  r.steps_per_epoch = 100;
  r.warmup_steps = 100;
  EXPECT_TRUE(ResolveRecipe(r).ok());
  return r;
}

// Rounds are numbered 0.., start where the previous ended, and cover [0, end) exactly.
void ExpectContiguous(const std::vector<Round>& rounds, int64_t end) {
  ASSERT_FALSE(rounds.empty());
  int64_t next = 0;
  for (size_t i = 0; i < rounds.size(); ++i) {
    EXPECT_EQ(rounds[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(rounds[i].start_step, next);
    EXPECT_GE(rounds[i].h, 1);
    next = rounds[i].end_step();
  }
  EXPECT_EQ(next, end);
}

TEST(RoundPlannerTest, RoundsAreContiguousAndCoverTheRun) {
  RoundPlanner planner(QsrRecipe());
  EXPECT_EQ(planner.total_steps(), 1000);
  ExpectContiguous(planner.Plan(), 1000);
}

TEST(RoundPlannerTest, RoundsCarryTheRuleAndTheLr) {
  const Recipe r = QsrRecipe();
  RoundPlanner planner(r);
  const std::vector<Round> rounds = planner.Plan();
  const SyncRuleParams rule = SyncRuleParams::FromRecipe(r);
  for (const Round& round : rounds) {
    EXPECT_DOUBLE_EQ(round.lr, planner.schedule().At(round.start_step));
    const int64_t h = SyncPeriod(rule, round.start_step, round.lr);
    EXPECT_EQ(round.h, std::min<int64_t>(h, 1000 - round.start_step));
  }
  EXPECT_EQ(rounds.front().h, 4);  // init_h during warmup
}

TEST(RoundPlannerTest, HGrowsAsTheLrDecays) {
  const std::vector<Round> rounds = RoundPlanner(QsrRecipe()).Plan();
  int64_t first_after_warmup = 0;
  for (size_t i = 1; i < rounds.size(); ++i) {
    if (rounds[i].start_step < 100) continue;
    if (first_after_warmup == 0) first_after_warmup = rounds[i].h;
    // Non-decreasing, except the last round which the schedule's end cuts short.
    if (rounds[i - 1].start_step >= 100 && i + 1 < rounds.size()) {
      EXPECT_GE(rounds[i].h, rounds[i - 1].h) << "round " << i;
    }
  }
  EXPECT_EQ(first_after_warmup, 2);            // (0.02 / 0.1)^2 floors to 0 -> min_h
  EXPECT_GT(rounds[rounds.size() - 2].h, 30);  // 34: H grew from 2
}

TEST(RoundPlannerTest, LastRoundCutWhereTheRunEndsBeforeTheSchedule) {
  Recipe r = QsrRecipe();
  r.alpha = 0;
  r.init_h = 7;
  r.epochs = 5;
  r.epochs_for_sche = 10;
  ASSERT_TRUE(ResolveRecipe(r).ok());
  RoundPlanner planner(r);
  EXPECT_EQ(planner.total_steps(), 500);
  const std::vector<Round> rounds = planner.Plan();
  ExpectContiguous(rounds, 500);
  ASSERT_EQ(rounds.size(), 72u);  // 71 * 7 + 3
  EXPECT_EQ(rounds.back().h, 3);
  EXPECT_FALSE(planner.RoundAt(72, 500).has_value());
  EXPECT_FALSE(planner.RoundAt(72, 600).has_value());
}

TEST(RoundPlannerTest, QsrRunEndingBeforeTheScheduleStillCoversTheRun) {
  Recipe r = QsrRecipe();
  r.epochs = 7;
  r.epochs_for_sche = 10;
  ASSERT_TRUE(ResolveRecipe(r).ok());
  ExpectContiguous(RoundPlanner(r).Plan(), 700);
}

// As the authors' resume script with --epochs past --epochs-for-sche: xscheduler keeps min_lr after
// T and adjust_h's cap T - t is <= 0 there, so every round is one step.
TEST(RoundPlannerTest, StepsPastTheScheduleRunAtMinLrWithHOne) {
  Recipe r = QsrRecipe();
  r.epochs = 12;
  r.epochs_for_sche = 10;
  ASSERT_TRUE(ResolveRecipe(r).ok());
  RoundPlanner planner(r);
  EXPECT_EQ(planner.total_steps(), 1200);
  const std::vector<Round> rounds = planner.Plan();
  ExpectContiguous(rounds, 1200);
  int64_t past = 0;
  for (const Round& round : rounds) {
    if (round.start_step < 1000) {
      EXPECT_LE(round.end_step(), 1000) << "a round crosses T at step " << round.start_step;
      continue;
    }
    ++past;
    EXPECT_EQ(round.h, 1) << "step " << round.start_step;
    EXPECT_EQ(round.lr, r.min_lr) << "step " << round.start_step;
  }
  EXPECT_EQ(past, 200);
  // The part up to T is the plan of the run that stops there.
  Recipe stop = r;
  stop.epochs = 10;
  const std::vector<Round> head = RoundPlanner(stop).Plan();
  ASSERT_EQ(rounds.size(), head.size() + 200);
  for (size_t i = 0; i < head.size(); ++i) EXPECT_EQ(rounds[i].h, head[i].h) << "round " << i;
}

TEST(RoundPlannerTest, RoundAtMatchesPlan) {
  RoundPlanner planner(QsrRecipe());
  for (const Round& round : planner.Plan()) {
    const std::optional<Round> again = planner.RoundAt(round.index, round.start_step);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->h, round.h);
    EXPECT_EQ(again->lr, round.lr);
  }
}

TEST(RoundPlannerTest, Summarize) {
  std::vector<Round> rounds(3);
  rounds[0].h = 2;
  rounds[1].start_step = 2;
  rounds[1].h = 4;
  rounds[2].start_step = 6;
  rounds[2].h = 6;
  const PlanSummary s = RoundPlanner::Summarize(rounds);
  EXPECT_EQ(s.rounds, 3);
  EXPECT_EQ(s.total_steps, 12);
  EXPECT_DOUBLE_EQ(s.mean_h, 4.0);
  EXPECT_EQ(s.max_h, 6);
  EXPECT_DOUBLE_EQ(s.sync_share, 0.25);

  const PlanSummary empty = RoundPlanner::Summarize({});
  EXPECT_EQ(empty.rounds, 0);
  EXPECT_EQ(empty.mean_h, 0.0);
  EXPECT_EQ(empty.sync_share, 0.0);
}

TEST(RoundPlannerTest, SummaryOfAPlanCountsEveryStep) {
  const std::vector<Round> rounds = RoundPlanner(QsrRecipe()).Plan();
  const PlanSummary s = RoundPlanner::Summarize(rounds);
  EXPECT_EQ(s.rounds, static_cast<int64_t>(rounds.size()));
  EXPECT_EQ(s.total_steps, 1000);
  EXPECT_LT(s.sync_share, 1.0);
  EXPECT_GT(s.max_h, 50);
}

TEST(RoundPlannerTest, DataParallelSyncsEveryStep) {
  Recipe r;
  r.optimizer = "sgd";
  r.alpha = 0.02;
  r.init_h = 8;
  r.epochs = 200;  // 200 * 468 = 93600 steps: one round each, planned quickly
  ASSERT_TRUE(ResolveRecipe(r).ok());
  RoundPlanner planner(r);
  const std::vector<Round> rounds = planner.Plan();
  ASSERT_EQ(rounds.size(), 93600u);
  for (const Round& round : rounds) ASSERT_EQ(round.h, 1);
  ExpectContiguous(rounds, 93600);
  EXPECT_DOUBLE_EQ(RoundPlanner::Summarize(rounds).sync_share, 1.0);
}

// Every epoch boundary a round crosses (and the run's end) is followed by an evaluation; with
// save_freq 3 the rounds reaching epochs 3, 6, 9 and the last one checkpoint.
TEST(RoundPlannerTest, EvaluatesAfterEachEpochAndCheckpointsEverySaveFreqEpochs) {
  Recipe r = QsrRecipe();
  r.save_freq = 3;
  const std::vector<Round> plan = RoundPlanner(r).Plan();
  std::vector<int64_t> eval_epochs, checkpoint_epochs;
  for (const Round& round : plan) {
    const bool crosses_epoch = round.end_step() / 100 != round.start_step / 100;
    const bool last = round.end_step() == 1000;
    EXPECT_EQ(round.eval_after, crosses_epoch || last) << "round " << round.index;
    if (round.eval_after) eval_epochs.push_back(round.end_step() / 100);
    if (round.checkpoint_after) checkpoint_epochs.push_back(round.end_step() / 100);
  }
  EXPECT_EQ(eval_epochs.size(), 10u);
  EXPECT_EQ(checkpoint_epochs, (std::vector<int64_t>{3, 6, 9, 10}));
  // RoundAt, which the coordinator serves from, decides the same.
  for (const Round& round : plan) {
    const std::optional<Round> again = RoundPlanner(r).RoundAt(round.index, round.start_step);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->eval_after, round.eval_after);
    EXPECT_EQ(again->checkpoint_after, round.checkpoint_after);
  }
}

TEST(RoundPlannerTest, NoCheckpointsWithoutSaveFreqButTheLastRoundEvaluates) {
  Recipe r = QsrRecipe();
  r.save_freq = 0;
  const std::vector<Round> plan = RoundPlanner(r).Plan();
  for (const Round& round : plan) EXPECT_FALSE(round.checkpoint_after) << round.index;
  EXPECT_TRUE(plan.back().eval_after);
}

TEST(RoundPlannerTest, FirstRoundFromCountsTheRoundsBeforeAStep) {
  RoundPlanner planner(QsrRecipe());
  const std::vector<Round> plan = planner.Plan();
  EXPECT_EQ(planner.FirstRoundFrom(0), 0);
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(planner.FirstRoundFrom(plan[i].start_step), static_cast<int64_t>(i));
    if (plan[i].h > 1) {  // a step inside round i: the run picks up at round i + 1
      EXPECT_EQ(planner.FirstRoundFrom(plan[i].start_step + 1), static_cast<int64_t>(i + 1));
    }
  }
  EXPECT_EQ(planner.FirstRoundFrom(planner.total_steps()), static_cast<int64_t>(plan.size()));
}

}  // namespace
}  // namespace qsr
