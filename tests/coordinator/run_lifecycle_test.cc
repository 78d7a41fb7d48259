// RunLifecycle on its own, with real parts (Membership, Admission, RoundBarrier, RoundLedger) and
// no RunController: generations forming and ending, the run failing, stopping and finishing, and
// what it journals.
#include "coordinator/run_lifecycle.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/coordinator/test_recipe.h"

namespace qsr {
namespace {

// A run of `workers` (min_workers `min_workers`, max_workers `workers`) and the parts its
// lifecycle borrows.
struct TestRun {
  TestRun(int workers, int min_workers, std::shared_ptr<Journal> journal = nullptr,
          const Journal::Recovered& recovered = Journal::Recovered(), int max_workers = -1)
      : recipe(testing::SmallQsrRecipe(workers, min_workers, max_workers)),
        planner(recipe),
        membership(MembershipOptions(workers, min_workers, max_workers)),
        admission(&membership, "run-1"),
        ledger(RoundLedger::Options(), nullptr, std::move(journal)),
        lifecycle("run-1", now, {&recipe, &planner, &membership, &admission, &barrier, &ledger},
                  [this](int rank) { return Reply(rank); }) {
    lifecycle.Start(recovered, "model: mlp\n", now);
  }

  static Membership::Options MembershipOptions(int workers, int min_workers, int max_workers) {
    Membership::Options o;
    o.initial_size = workers;
    o.min_workers = min_workers;
    o.max_workers = max_workers > 0 ? max_workers : workers;
    o.regroup_timeout = absl::Seconds(10);
    o.replacement_timeout = absl::Seconds(60);
    return o;
  }
  v1::JoinReply Reply(int rank) const {
    v1::JoinReply reply;
    reply.set_rank(rank);
    reply.set_generation(membership.generation());
    reply.mutable_outcome()->set_code(v1::Outcome::OK);
    return reply;
  }
  // `worker_id` joins (its replies land in joins[worker_id]) and the lifecycle looks whether
  // the generation forms.
  void Join(const std::string& worker_id, absl::Time at) {
    v1::JoinRequest r;
    r.set_worker_id(worker_id);
    admission.Join(
        r, at, at + absl::Seconds(600), membership_max(), [this](int rank) { return Reply(rank); },
        [this, worker_id](const v1::JoinReply& reply) { joins[worker_id].push_back(reply); },
        &completions);
    lifecycle.MaybeForm(at, &completions);
    RunCompletions();
  }
  // `ranks` wait at the barrier for round 0; the reply lands in `barrier_reply`.
  void Arrive(const std::vector<int>& ranks) {
    ASSERT_TRUE(barrier
                    .Arrive(
                        0, ranks, recipe.workers, now, absl::Seconds(30),
                        [this](const v1::NextRoundsReply& r) { barrier_reply = r; }, &completions)
                    .ok());
  }
  int64_t membership_max() const {
    return recipe.max_workers > 0 ? recipe.max_workers : recipe.workers;
  }
  void RunCompletions() {
    for (auto& c : completions) c();
    completions.clear();
  }

  const absl::Time now = absl::FromUnixSeconds(1700000000);
  const Recipe recipe;
  const RoundPlanner planner;
  Membership membership;
  Admission admission;
  RoundBarrier barrier;
  RoundLedger ledger;
  RunLifecycle lifecycle;
  std::vector<RunLifecycle::Completion> completions;
  std::map<std::string, std::vector<v1::JoinReply>> joins;
  std::optional<v1::NextRoundsReply> barrier_reply;
};

TEST(RunLifecycleTest, TheFirstGenerationFormsWhenEveryWorkerHasJoined) {
  TestRun run(2, 1);
  run.Join("a", run.now);
  EXPECT_EQ(run.lifecycle.state(), RunLifecycle::State::kWaiting);
  EXPECT_STREQ(run.lifecycle.StateName(), "WAITING");
  EXPECT_TRUE(run.joins.empty());
  run.Join("b", run.now);
  EXPECT_STREQ(run.lifecycle.StateName(), "RUNNING");
  ASSERT_EQ(run.joins["a"].size(), 1u);
  ASSERT_EQ(run.joins["b"].size(), 1u);
  EXPECT_EQ(run.joins["a"][0].rank(), 0);
  EXPECT_EQ(run.joins["b"][0].rank(), 1);
  EXPECT_EQ(run.joins["b"][0].generation(), 1);
  EXPECT_EQ(run.lifecycle.View().regroups, 0);
}

TEST(RunLifecycleTest, AFailedGenerationAnswersTheBarrierAndTheSurvivorsRegroup) {
  TestRun run(2, 1);
  run.Join("a", run.now);
  run.Join("b", run.now);
  run.Arrive({0});
  run.lifecycle.FailGeneration("rank 1 failed: boom", {1}, run.now, &run.completions);
  run.RunCompletions();
  ASSERT_TRUE(run.barrier_reply.has_value());
  EXPECT_EQ(run.barrier_reply->outcome().code(), v1::Outcome::GENERATION_ENDED);
  EXPECT_EQ(run.barrier_reply->outcome().message(), "generation 1 ended: rank 1 failed: boom");
  EXPECT_STREQ(run.lifecycle.StateName(), "REGROUPING");
  EXPECT_EQ(run.lifecycle.View().failures, 1);

  // The only survivor joins again: the next generation forms without waiting for rank 1.
  run.Join("a", run.now + absl::Seconds(1));
  EXPECT_STREQ(run.lifecycle.StateName(), "RUNNING");
  EXPECT_EQ(run.membership.generation(), 2);
  ASSERT_EQ(run.joins["a"].size(), 2u);
  EXPECT_EQ(run.joins["a"][1].generation(), 2);
  EXPECT_EQ(run.lifecycle.View().regroups, 1);
  EXPECT_EQ(run.lifecycle.View().failures, 1);
}

TEST(RunLifecycleTest, EndingAGenerationToAdmitWorkersIsNoFailure) {
  TestRun run(1, 1, nullptr, Journal::Recovered(), /*max_workers=*/2);
  run.Join("a", run.now);
  run.Join("b", run.now);  // waits for the next round boundary
  EXPECT_TRUE(run.joins["b"].empty());
  ASSERT_TRUE(run.membership.admission_pending());
  run.Arrive({0});
  run.lifecycle.EndToAdmit(run.now, &run.completions);
  run.RunCompletions();
  ASSERT_TRUE(run.barrier_reply.has_value());
  EXPECT_EQ(run.barrier_reply->outcome().code(), v1::Outcome::GENERATION_ENDED);
  EXPECT_EQ(run.barrier_reply->outcome().message(), "generation 1 ended: admitting 1 worker(s)");
  EXPECT_STREQ(run.lifecycle.StateName(), "REGROUPING");

  run.Join("a", run.now);  // the survivor comes back: both train in generation 2
  EXPECT_STREQ(run.lifecycle.StateName(), "RUNNING");
  EXPECT_EQ(run.membership.generation(), 2);
  EXPECT_EQ(run.membership.members().size(), 2u);
  ASSERT_EQ(run.joins["b"].size(), 1u);
  EXPECT_EQ(run.joins["b"][0].generation(), 2);
  EXPECT_EQ(run.lifecycle.View().failures, 0);
  EXPECT_EQ(run.lifecycle.View().regroups, 1);
}

TEST(RunLifecycleTest, BelowMinWorkersPastTheReplacementTimeoutTheRunFailsAndAnswersEveryJoin) {
  TestRun run(2, 2);
  run.Join("a", run.now);
  run.Join("b", run.now);
  run.lifecycle.FailGeneration("rank 1 failed: boom", {1}, run.now, &run.completions);
  run.RunCompletions();
  run.Join("a", run.now + absl::Seconds(1));  // waits for a replacement of b
  EXPECT_EQ(run.joins["a"].size(), 1u);
  EXPECT_STREQ(run.lifecycle.StateName(), "REGROUPING");

  run.lifecycle.MaybeForm(run.now + absl::Seconds(61), &run.completions);
  run.RunCompletions();
  EXPECT_EQ(run.lifecycle.state(), RunLifecycle::State::kFailed);
  EXPECT_TRUE(run.lifecycle.ended());
  EXPECT_EQ(run.lifecycle.View().failures, 2);
  EXPECT_NE(run.lifecycle.message().find("only 1 workers (min_workers 2)"), std::string::npos)
      << run.lifecycle.message();
  ASSERT_EQ(run.joins["a"].size(), 2u);
  EXPECT_EQ(run.joins["a"][1].outcome().code(), v1::Outcome::RUN_FAILED);
  EXPECT_EQ(run.joins["a"][1].outcome().message(), "run failed: " + run.lifecycle.message());

  // An ended run does not move again.
  run.lifecycle.MaybeForm(run.now + absl::Seconds(62), &run.completions);
  EXPECT_TRUE(run.completions.empty());
  EXPECT_EQ(run.lifecycle.View().failures, 2);
}

TEST(RunLifecycleTest, AStopBeforeAnyWorkerJoinedFinishesTheRunAndIsIdempotent) {
  TestRun run(2, 1);
  v1::StopReply first = run.lifecycle.Stop("operator", &run.completions);
  run.RunCompletions();
  EXPECT_EQ(first.outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(first.stop_step(), 0);
  EXPECT_STREQ(run.lifecycle.StateName(), "FINISHED");
  EXPECT_EQ(run.lifecycle.message(), RunLifecycle::kStoppedByOperator);

  v1::StopReply again = run.lifecycle.Stop("", &run.completions);
  EXPECT_EQ(again.outcome().code(), v1::Outcome::RUN_FINISHED);
  EXPECT_EQ(again.outcome().message(), "run is already FINISHED: stopped by operator");
}

TEST(RunLifecycleTest, AStopAnswersTheBarrierAndTheRunFinishesWhenTheLastMemberLeft) {
  TestRun run(1, 1);
  run.Join("a", run.now);
  run.Arrive({0});
  run.lifecycle.Stop("", &run.completions);
  run.RunCompletions();
  ASSERT_TRUE(run.barrier_reply.has_value());
  EXPECT_EQ(run.barrier_reply->outcome().code(), v1::Outcome::RUN_FINISHED);
  EXPECT_STREQ(run.lifecycle.StateName(), "RUNNING");  // a member is still in the run

  run.membership.MarkLeft(0);
  run.lifecycle.MaybeFinish(&run.completions);
  EXPECT_STREQ(run.lifecycle.StateName(), "FINISHED");
  EXPECT_TRUE(run.lifecycle.View().stop_requested);
}

TEST(RunLifecycleTest, WorkersThatNeverAskedForARoundFinishTheRunAsRendezvousOnly) {
  TestRun run(1, 1);
  run.Join("a", run.now);
  run.lifecycle.MaybeFinish(&run.completions);
  EXPECT_STREQ(run.lifecycle.StateName(), "RUNNING");  // "a" is still a member
  run.membership.MarkLeft(0);
  run.lifecycle.MaybeFinish(&run.completions);
  EXPECT_STREQ(run.lifecycle.StateName(), "FINISHED");
  EXPECT_NE(run.lifecycle.message().find("rendezvous only"), std::string::npos);
}

TEST(RunLifecycleTest, TheJournalHoldsTheStartGenerationAndEndAndARestartContinuesFromIt) {
  const std::string dir =
      ::testing::TempDir() + "/lifecycle_" + std::to_string(absl::ToUnixNanos(absl::Now()));
  {
    Journal::Recovered fresh;
    absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(dir, &fresh);
    ASSERT_TRUE(journal.ok()) << journal.status();
    ASSERT_FALSE(fresh.exists);
    TestRun run(1, 1, std::shared_ptr<Journal>(std::move(*journal)));
    run.Join("a", run.now);
    run.lifecycle.Stop("", &run.completions);
    run.membership.MarkLeft(0);
    run.lifecycle.MaybeFinish(&run.completions);
    ASSERT_STREQ(run.lifecycle.StateName(), "FINISHED");
  }
  Journal::Recovered recovered;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(dir, &recovered);
  ASSERT_TRUE(journal.ok()) << journal.status();
  ASSERT_TRUE(recovered.exists);
  EXPECT_EQ(recovered.run_id, "run-1");
  EXPECT_EQ(recovered.recipe_yaml, "model: mlp\n");
  EXPECT_EQ(recovered.generation, 1);
  EXPECT_EQ(recovered.members, std::vector<std::string>{"a"});
  ASSERT_TRUE(recovered.ended);
  EXPECT_EQ(recovered.end.state(), "FINISHED");
  EXPECT_EQ(recovered.end.message(), RunLifecycle::kStoppedByOperator);

  TestRun restarted(1, 1, std::shared_ptr<Journal>(std::move(*journal)), recovered);
  EXPECT_STREQ(restarted.lifecycle.StateName(), "FINISHED");
  EXPECT_EQ(restarted.lifecycle.message(), RunLifecycle::kStoppedByOperator);
}

}  // namespace
}  // namespace qsr
