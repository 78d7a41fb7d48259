// RunController across failures: generations end and re-form, interrupted rounds are replayed
// once, joiners enter at round boundaries, and the run fails only when it cannot go on.
#include <map>
#include <memory>
#include <optional>

#include "absl/time/clock.h"
#include "common/round_planner.h"
#include "coordinator/journal.h"
#include "coordinator/run_controller.h"
#include "gtest/gtest.h"
#include "tests/coordinator/test_recipe.h"

namespace qsr {
namespace {

// A simulated worker: what it was told when it joined, and the round its state is ready for.
struct Worker {
  std::string id;
  int rank = -1;
  int64_t generation = 0;
  int64_t next_round = 0;
};

class RecoveryTest : public ::testing::TestWithParam<int> {
 protected:
  void Start(int min_workers, int max_workers) {
    world_ = GetParam();
    recipe_ = testing::SmallQsrRecipe(world_, min_workers, max_workers);
    RunController::Options options;
    options.run_id = "t";
    options.plan_batch_steps = 1;
    options.round_timeout = absl::Seconds(30);
    options.heartbeat_timeout = absl::Seconds(10);
    options.regroup_timeout = absl::Seconds(10);
    options.replacement_timeout = absl::Seconds(40);
    controller_ = std::make_unique<RunController>(recipe_, options, nullptr);
    for (int i = 0; i < world_; ++i) workers_.push_back(Worker{"w" + std::to_string(i)});
    ASSERT_TRUE(JoinAll(workers_));
  }

  // Every worker in `group` asks to join (with the round it holds); true when all were admitted.
  bool JoinAll(std::vector<Worker>& group) {
    // Shared with the callbacks, which may run after this returns (a Join still waiting).
    auto got = std::make_shared<std::vector<std::optional<v1::JoinReply>>>(group.size());
    for (size_t i = 0; i < group.size(); ++i) {
      v1::JoinRequest join;
      join.set_worker_id(group[i].id);
      join.set_next_round(group[i].next_round);
      EXPECT_TRUE(controller_
                      ->Join(join, now_, now_ + absl::Seconds(60),
                             [got, i](const v1::JoinReply& r) { (*got)[i] = r; })
                      .ok());
    }
    for (size_t i = 0; i < group.size(); ++i) {
      const std::optional<v1::JoinReply>& reply = (*got)[i];
      if (!reply || reply->outcome().code() != v1::Outcome::OK) return false;
      group[i].rank = reply->rank();
      group[i].generation = reply->generation();
      group[i].next_round = reply->start_round();
    }
    return true;
  }

  // The group's barrier for its next round; returns the common reply.
  v1::NextRoundsReply Barrier(std::vector<Worker>& group) {
    std::vector<std::optional<v1::NextRoundsReply>> got(group.size());
    for (size_t i = 0; i < group.size(); ++i) {
      v1::NextRoundsRequest r;
      r.set_worker_id(group[i].id);
      r.set_rank(group[i].rank);
      r.set_generation(group[i].generation);
      r.set_next_round(group[i].next_round);
      EXPECT_TRUE(
          controller_->NextRounds(r, now_, [&got, i](const v1::NextRoundsReply& x) { got[i] = x; })
              .ok());
    }
    for (auto& g : got) EXPECT_TRUE(g.has_value());
    return got[0].value_or(v1::NextRoundsReply());
  }

  void Report(Worker& w, const v1::RoundPlan& plan) {
    v1::ReportRequest r;
    r.set_worker_id(w.id);
    r.set_rank(w.rank);
    r.set_generation(w.generation);
    v1::RoundReport* rr = r.add_rounds();
    rr->set_round(plan.round());
    rr->set_start_step(plan.start_step());
    rr->set_h(plan.h());
    rr->set_samples(plan.h() * 10);
    rr->set_seconds(0.1);
    ASSERT_TRUE(controller_->Report(r, now_).ok());
    w.next_round = plan.round() + 1;
  }

  // The last worker leaves with `error` (as a worker that fails does).
  void FailLastWorker(const std::string& error) {
    v1::LeaveRequest l;
    l.set_worker_id(workers_.back().id);
    l.set_rank(workers_.back().rank);
    l.set_generation(workers_.back().generation);
    l.set_error(error);
    ASSERT_TRUE(controller_->Leave(l, now_).ok());
  }

  // Trains and reports every round handed to `group` until the plan is exhausted.
  void TrainToEnd(std::vector<Worker>& group) {
    for (int guard = 0; guard < 1000; ++guard) {
      v1::NextRoundsReply reply = Barrier(group);
      if (reply.outcome().code() == v1::Outcome::RUN_FINISHED) break;
      ASSERT_EQ(reply.outcome().code(), v1::Outcome::OK) << reply.outcome().message();
      for (const v1::RoundPlan& p : reply.rounds()) {
        for (Worker& w : group) Report(w, p);
      }
    }
    for (Worker& w : group) {
      v1::LeaveRequest l;
      l.set_worker_id(w.id);
      l.set_rank(w.rank);
      l.set_generation(w.generation);
      ASSERT_TRUE(controller_->Leave(l, now_).ok());
    }
  }

  // Every planned round was committed exactly once, in order.
  void ExpectEveryRoundOnce() {
    std::vector<Round> plan = RoundPlanner(recipe_).Plan();
    v1::ListRoundsReply rounds = controller_->Rounds(v1::ListRoundsRequest());
    ASSERT_EQ(rounds.rounds_size(), static_cast<int>(plan.size()));
    for (size_t i = 0; i < plan.size(); ++i) {
      EXPECT_EQ(rounds.rounds(i).round(), plan[i].index);
      EXPECT_EQ(rounds.rounds(i).step(), plan[i].start_step);
      EXPECT_EQ(rounds.rounds(i).h(), plan[i].h);
    }
  }

  int world_ = 0;
  Recipe recipe_;
  absl::Time now_ = absl::Now();
  std::vector<Worker> workers_;
  std::unique_ptr<RunController> controller_;
};

// Only the world sizes with a survivor, so that no test is skipped (in CI a skip reads as a
// failure: scripts/test.sh).
class RecoveryWithSurvivorsTest : public RecoveryTest {};

TEST_P(RecoveryWithSurvivorsTest, AFailedWorkersRoundIsReplayedByTheSurvivorsAndCommittedOnce) {
  Start(/*min_workers=*/1, /*max_workers=*/GetParam());
  // Two rounds go well.
  for (int i = 0; i < 2; ++i) {
    v1::NextRoundsReply reply = Barrier(workers_);
    for (Worker& w : workers_) Report(w, reply.rounds(0));
  }
  // The third: the last worker dies; rank 0 finished the round (its averaging completed before
  // the peer died), the others did not.
  v1::NextRoundsReply third = Barrier(workers_);
  const v1::RoundPlan interrupted = third.rounds(0);
  Report(workers_[0], interrupted);
  FailLastWorker("killed");
  EXPECT_EQ(controller_->Status(now_).state(), "REGROUPING");

  std::vector<Worker> survivors(workers_.begin(), workers_.end() - 1);
  // Old-generation calls are told to join again.
  v1::HeartbeatRequest hb;
  hb.set_worker_id(survivors[0].id);
  hb.set_rank(survivors[0].rank);
  hb.set_generation(survivors[0].generation);
  EXPECT_EQ(controller_->Heartbeat(hb, now_)->outcome().code(), v1::Outcome::GENERATION_ENDED);

  ASSERT_TRUE(JoinAll(survivors));
  // Rank 0 holds the newest state and leads; the group resumes after the round it completed.
  EXPECT_EQ(survivors[0].rank, 0);
  EXPECT_EQ(survivors[0].generation, 2);
  for (const Worker& w : survivors) EXPECT_EQ(w.next_round, interrupted.round() + 1);
  EXPECT_EQ(controller_->Status(now_).state(), "RUNNING");
  EXPECT_EQ(controller_->Status(now_).world_size(), world_ - 1);
  TrainToEnd(survivors);
  EXPECT_EQ(controller_->Status(now_).state(), "FINISHED");
  ExpectEveryRoundOnce();
  v1::ListRoundsReply rounds = controller_->Rounds(v1::ListRoundsRequest());
  EXPECT_EQ(rounds.rounds(interrupted.round()).workers(), 1);  // only rank 0's report came
  EXPECT_EQ(rounds.rounds(interrupted.round() + 1).workers(), world_ - 1);
  EXPECT_EQ(controller_->Status(now_).failures(), 1);
}

TEST_P(RecoveryWithSurvivorsTest, WhenNobodyFinishedTheRoundItIsTrainedAgain) {
  Start(1, GetParam());
  v1::NextRoundsReply first = Barrier(workers_);
  for (Worker& w : workers_) Report(w, first.rounds(0));
  v1::NextRoundsReply second = Barrier(workers_);
  // Missed heartbeats: every worker but rank 0 goes silent; nobody reports round 1.
  v1::HeartbeatRequest hb;
  hb.set_worker_id(workers_[0].id);
  hb.set_rank(0);
  hb.set_generation(workers_[0].generation);
  const absl::Time later = now_ + absl::Seconds(11);
  ASSERT_EQ(controller_->Heartbeat(hb, later - absl::Seconds(1))->outcome().code(),
            v1::Outcome::OK);
  controller_->Tick(later);
  EXPECT_EQ(controller_->Status(later).state(), "REGROUPING");
  now_ = later;
  std::vector<Worker> survivors = {workers_[0]};
  ASSERT_TRUE(JoinAll(survivors));
  EXPECT_EQ(survivors[0].next_round, second.rounds(0).round());
  TrainToEnd(survivors);
  ExpectEveryRoundOnce();
}

TEST_P(RecoveryTest, AJoinerEntersAtTheNextRoundBoundaryAndGetsTheLastRank) {
  Start(1, GetParam() + 1);
  v1::NextRoundsReply first = Barrier(workers_);
  for (Worker& w : workers_) Report(w, first.rounds(0));
  std::optional<v1::JoinReply> joined;
  v1::JoinRequest join;
  join.set_worker_id("newcomer");
  ASSERT_TRUE(
      controller_
          ->Join(join, now_, now_ + absl::Seconds(60), [&](const v1::JoinReply& r) { joined = r; })
          .ok());
  EXPECT_FALSE(joined.has_value());  // not in the middle of a round
  v1::NextRoundsReply boundary = Barrier(workers_);
  EXPECT_EQ(boundary.outcome().code(), v1::Outcome::GENERATION_ENDED);
  ASSERT_TRUE(JoinAll(workers_));
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(joined->outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(joined->rank(), world_);
  EXPECT_EQ(joined->world_size(), world_ + 1);
  EXPECT_EQ(joined->start_round(), first.rounds(0).round() + 1);
  for (int i = 0; i < world_; ++i) EXPECT_EQ(workers_[i].rank, i);
  workers_.push_back(
      Worker{"newcomer", joined->rank(), joined->generation(), joined->start_round()});
  TrainToEnd(workers_);
  ExpectEveryRoundOnce();
  // A full run turns the next one away.
  v1::JoinRequest extra;
  extra.set_worker_id("late");
  EXPECT_NE(controller_->JoinNow(extra, now_)->outcome().code(), v1::Outcome::OK);
}

TEST_P(RecoveryWithSurvivorsTest, BelowMinWorkersTheRunWaitsForAReplacementThenFails) {
  Start(/*min_workers=*/GetParam(), GetParam());
  v1::NextRoundsReply first = Barrier(workers_);
  for (Worker& w : workers_) Report(w, first.rounds(0));
  FailLastWorker("node lost");
  std::vector<Worker> survivors(workers_.begin(), workers_.end() - 1);
  EXPECT_FALSE(JoinAll(survivors));  // too few: they wait
  controller_->Tick(now_ + absl::Seconds(30));
  EXPECT_EQ(controller_->Status(now_).state(), "REGROUPING");
  controller_->Tick(now_ + absl::Seconds(41));
  EXPECT_TRUE(controller_->Failed());
  EXPECT_NE(controller_->Status(now_).message().find("min_workers"), std::string::npos);
}

TEST_P(RecoveryWithSurvivorsTest, AReplacementRestoresTheGroupBelowMinWorkers) {
  Start(/*min_workers=*/GetParam(), GetParam());
  v1::NextRoundsReply first = Barrier(workers_);
  for (Worker& w : workers_) Report(w, first.rounds(0));
  FailLastWorker("node lost");
  workers_.back() = Worker{"replacement"};
  ASSERT_TRUE(JoinAll(workers_));
  EXPECT_EQ(workers_.back().rank, world_ - 1);  // it holds no state: it does not lead
  TrainToEnd(workers_);
  ExpectEveryRoundOnce();
  EXPECT_FALSE(controller_->Failed());
}

TEST_P(RecoveryWithSurvivorsTest, AnEvictedWorkerLearnsItAndCanComeBackAsAJoiner) {
  Start(1, GetParam());
  v1::NextRoundsReply first = Barrier(workers_);
  for (Worker& w : workers_) Report(w, first.rounds(0));
  // The last worker stops (SIGSTOP): only the others heartbeat.
  const absl::Time later = now_ + absl::Seconds(11);
  for (size_t i = 0; i + 1 < workers_.size(); ++i) {
    v1::HeartbeatRequest hb;
    hb.set_worker_id(workers_[i].id);
    hb.set_rank(workers_[i].rank);
    hb.set_generation(workers_[i].generation);
    ASSERT_TRUE(controller_->Heartbeat(hb, later - absl::Seconds(1)).ok());
  }
  controller_->Tick(later);
  now_ = later;
  std::vector<Worker> survivors(workers_.begin(), workers_.end() - 1);
  ASSERT_TRUE(JoinAll(survivors));
  // SIGCONT: its next call says its generation is over.
  Worker& stopped = workers_.back();
  v1::NextRoundsRequest ask;
  ask.set_worker_id(stopped.id);
  ask.set_rank(stopped.rank);
  ask.set_generation(stopped.generation);
  ask.set_next_round(stopped.next_round);
  std::optional<v1::NextRoundsReply> told;
  ASSERT_TRUE(
      controller_->NextRounds(ask, now_, [&](const v1::NextRoundsReply& r) { told = r; }).ok());
  ASSERT_TRUE(told.has_value());
  EXPECT_EQ(told->outcome().code(), v1::Outcome::GENERATION_ENDED);
  // It asks to join again and enters at the next round boundary.
  std::optional<v1::JoinReply> rejoined;
  v1::JoinRequest join;
  join.set_worker_id(stopped.id);
  join.set_next_round(stopped.next_round);
  ASSERT_TRUE(controller_
                  ->Join(join, now_, now_ + absl::Seconds(60),
                         [&](const v1::JoinReply& r) { rejoined = r; })
                  .ok());
  EXPECT_FALSE(rejoined.has_value());
  EXPECT_EQ(Barrier(survivors).outcome().code(), v1::Outcome::GENERATION_ENDED);
  ASSERT_TRUE(JoinAll(survivors));
  ASSERT_TRUE(rejoined.has_value());
  EXPECT_EQ(rejoined->outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(rejoined->world_size(), world_);
  survivors.push_back(
      Worker{stopped.id, rejoined->rank(), rejoined->generation(), rejoined->start_round()});
  TrainToEnd(survivors);
  ExpectEveryRoundOnce();
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, RecoveryTest, ::testing::Values(1, 2, 3));
INSTANTIATE_TEST_SUITE_P(WorldSizes, RecoveryWithSurvivorsTest, ::testing::Values(2, 3));

// A controller as a coordinator restarted on its journal builds it: generation 1 of w0 and w1
// ended by the restart, with `served` in flight. Heartbeat timeout 2 s, regroup timeout 10 s.
std::unique_ptr<RunController> Restarted(const std::string& name,
                                         const std::vector<v1::RoundPlan>& served = {}) {
  const std::string dir =
      ::testing::TempDir() + "/" + name + "_" + std::to_string(absl::ToUnixNanos(absl::Now()));
  Journal::Recovered recovered;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(dir, &recovered);
  EXPECT_TRUE(journal.ok()) << journal.status();
  if (!journal.ok()) return nullptr;
  recovered.exists = true;
  recovered.run_id = "t";
  recovered.generation = 1;
  recovered.members = {"w0", "w1"};
  recovered.served = served;
  RunController::Options options;
  options.run_id = "t";
  options.heartbeat_timeout = absl::Seconds(2);
  options.regroup_timeout = absl::Seconds(10);
  return std::make_unique<RunController>(testing::SmallQsrRecipe(2, 1, 2), options, nullptr,
                                         std::shared_ptr<Journal>(std::move(*journal)), recovered);
}

// The journal's recipe was completed at the first start (checkpoint folder); the same --recipe
// given again is not a change, a different value is.
TEST(RestartRecoveryTest, TheSameRecipeIsNotAChangeAndAnotherValueIs) {
  Recipe given = testing::SmallQsrRecipe(2, 1, 2);
  ASSERT_TRUE(given.checkpoint_dir.empty());
  Recipe journaled = given;
  journaled.checkpoint_dir = "/runs/r1/checkpoints";
  EXPECT_FALSE(RecipeChangedOnRestart(given, journaled));
  Recipe other = given;
  other.epochs += 1;
  EXPECT_TRUE(RecipeChangedOnRestart(other, journaled));
  Recipe elsewhere = given;
  elsewhere.checkpoint_dir = "/elsewhere";
  EXPECT_TRUE(RecipeChangedOnRestart(elsewhere, journaled));
}

// A coordinator restarted on its journal waits for every member of the interrupted generation
// until the regroup timeout, even one silent for longer than a heartbeat timeout: its workers
// could not reach it while it was down, and one still reconnecting is not dead.
TEST(RestartRecoveryTest, SilentMembersAreAwaitedUntilTheRegroupTimeout) {
  const absl::Time start = absl::Now();
  std::unique_ptr<RunController> controller = Restarted("restart_silent");
  ASSERT_NE(controller, nullptr);
  std::optional<v1::JoinReply> w0;
  v1::JoinRequest join;
  join.set_worker_id("w0");
  ASSERT_TRUE(
      controller
          ->Join(join, start, start + absl::Seconds(60), [&](const v1::JoinReply& r) { w0 = r; })
          .ok());
  // w1 has been silent for three heartbeat timeouts: still waited for.
  controller->Tick(start + absl::Seconds(6));
  EXPECT_FALSE(w0.has_value());
  // Past the regroup timeout the run goes on without it.
  controller->Tick(start + absl::Seconds(11));
  ASSERT_TRUE(w0.has_value());
  EXPECT_EQ(w0->outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(w0->world_size(), 1);
  EXPECT_EQ(w0->generation(), 2);
}

// The members may train the rest of the plan on the rounds they were served while the
// coordinator is down, then report and leave: the restarted coordinator ends the run finished,
// not failed for want of members.
TEST(RestartRecoveryTest, MembersThatFinishedThePlanMeanwhileEndTheRunFinished) {
  std::vector<v1::RoundPlan> served;
  for (const Round& r : RoundPlanner(testing::SmallQsrRecipe(2, 1, 2)).Plan()) {
    v1::RoundPlan p;
    p.set_round(r.index);
    p.set_start_step(r.start_step);
    p.set_h(r.h);
    p.set_lr(r.lr);
    served.push_back(p);
  }
  const absl::Time start = absl::Now();
  std::unique_ptr<RunController> controller = Restarted("restart_finished", served);
  ASSERT_NE(controller, nullptr);
  for (int rank = 0; rank < 2; ++rank) {
    v1::ReportRequest report;
    report.set_worker_id("w" + std::to_string(rank));
    report.set_rank(rank);
    report.set_generation(1);
    for (const v1::RoundPlan& p : served) {
      v1::RoundReport* r = report.add_rounds();
      r->set_round(p.round());
      r->set_start_step(p.start_step());
      r->set_h(p.h());
      r->set_samples(32 * p.h());
      r->set_params_digest(7);
    }
    ASSERT_TRUE(controller->Report(report, start).ok());
  }
  for (int rank = 0; rank < 2; ++rank) {
    v1::LeaveRequest leave;
    leave.set_worker_id("w" + std::to_string(rank));
    leave.set_rank(rank);
    leave.set_generation(1);
    ASSERT_TRUE(controller->Leave(leave, start).ok());
  }
  controller->Tick(start + absl::Seconds(1));
  const v1::GetStatusReply status = controller->Status(start + absl::Seconds(1));
  EXPECT_EQ(status.state(), "FINISHED") << status.message();
  EXPECT_EQ(controller->Rounds(v1::ListRoundsRequest()).rounds_size(),
            static_cast<int>(served.size()));
}

}  // namespace
}  // namespace qsr
