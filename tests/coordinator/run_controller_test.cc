#include "coordinator/run_controller.h"

#include <optional>

#include "common/round_planner.h"
#include "coordinator/request_validator.h"
#include "gtest/gtest.h"
#include "tests/coordinator/test_recipe.h"

namespace qsr {
namespace {

class RunControllerTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    world_ = GetParam();
    recipe_ = testing::SmallQsrRecipe(world_);
    RunController::Options options;
    options.run_id = "t";
    options.rendezvous_timeout = absl::Seconds(30);
    options.round_timeout = absl::Seconds(30);
    options.heartbeat_timeout = absl::Seconds(60);  // these tests send no heartbeats
    options.plan_batch_steps = 4;
    controller_ = std::make_unique<RunController>(recipe_, options, nullptr);
    JoinAll();
  }

  // Every worker joins; the generation forms when the last one has.
  void JoinAll() {
    std::vector<std::optional<v1::JoinReply>> got(world_);
    for (int i = 0; i < world_; ++i) {
      v1::JoinRequest join;
      join.set_worker_id("w" + std::to_string(i));
      ASSERT_TRUE(controller_
                      ->Join(join, now_, now_ + absl::Seconds(60),
                             [&got, i](const v1::JoinReply& r) { got[i] = r; })
                      .ok());
      // Nobody is answered before the generation is complete.
      if (i < world_ - 1) {
        EXPECT_FALSE(got[i].has_value());
      }
    }
    for (int i = 0; i < world_; ++i) {
      ASSERT_TRUE(got[i].has_value());
      ASSERT_EQ(got[i]->outcome().code(), v1::Outcome::OK) << got[i]->outcome().message();
      EXPECT_EQ(got[i]->rank(), i);
      EXPECT_EQ(got[i]->world_size(), world_);
      generation_ = got[i]->generation();
    }
  }

  v1::NextRoundsRequest Ask(int rank, int64_t next_round) {
    v1::NextRoundsRequest r;
    r.set_worker_id("w" + std::to_string(rank));
    r.set_rank(rank);
    r.set_generation(generation_);
    r.set_next_round(next_round);
    return r;
  }

  // Every rank asks for `next_round`; returns each rank's answer.
  std::vector<v1::NextRoundsReply> Barrier(int64_t next_round) {
    std::vector<std::optional<v1::NextRoundsReply>> got(world_);
    for (int rank = 0; rank < world_; ++rank) {
      EXPECT_TRUE(controller_
                      ->NextRounds(Ask(rank, next_round), now_,
                                   [&got, rank](const v1::NextRoundsReply& r) { got[rank] = r; })
                      .ok());
      // Nobody is released before the last member arrives.
      if (rank < world_ - 1) {
        EXPECT_FALSE(got[rank].has_value());
      }
    }
    std::vector<v1::NextRoundsReply> out;
    for (auto& g : got) {
      EXPECT_TRUE(g.has_value());
      out.push_back(g.value_or(v1::NextRoundsReply()));
    }
    return out;
  }

  // Every rank reports `plan`; the last rank's parameter digest is `digest`, the others' `others`
  // (0: no digest, as a worker whose round ended without an averaging sends).
  void ReportAll(const v1::RoundPlan& plan, uint64_t digest, uint64_t others = 7) {
    for (int rank = 0; rank < world_; ++rank) {
      v1::ReportRequest r;
      r.set_worker_id("w" + std::to_string(rank));
      r.set_rank(rank);
      r.set_generation(generation_);
      v1::RoundReport* rr = r.add_rounds();
      rr->set_round(plan.round());
      rr->set_start_step(plan.start_step());
      rr->set_h(plan.h());
      rr->set_train_loss(1.0 + rank);
      rr->set_samples(plan.h() * 32);
      rr->set_seconds(0.5);
      rr->set_bytes_sent(1000);
      rr->set_params_digest(rank == world_ - 1 ? digest : others);
      ASSERT_TRUE(controller_->Report(r, now_).ok());
    }
  }

  void LeaveAll() {
    for (int rank = 0; rank < world_; ++rank) {
      v1::LeaveRequest l;
      l.set_worker_id("w" + std::to_string(rank));
      l.set_rank(rank);
      l.set_generation(generation_);
      ASSERT_TRUE(controller_->Leave(l, now_).ok());
    }
  }

  int world_ = 0;
  Recipe recipe_;
  absl::Time now_ = absl::Now();
  int64_t generation_ = 0;
  std::unique_ptr<RunController> controller_;
};

// What needs peers runs only at the world sizes that have them, so that no test is skipped: in
// CI a skipped test reads as a failure (scripts/test.sh).
class RunControllerPeersTest : public RunControllerTest {};
// A group call and a rank outside it.
class RunControllerGroupTest : public RunControllerTest {};

TEST_P(RunControllerTest, ServesThePlannersRoundsAndCommitsThem) {
  std::vector<Round> expected = RoundPlanner(recipe_).Plan();
  std::vector<v1::RoundPlan> served;
  int64_t next = 0;
  while (true) {
    std::vector<v1::NextRoundsReply> replies = Barrier(next);
    for (const auto& r : replies) EXPECT_EQ(r.SerializeAsString(), replies[0].SerializeAsString());
    if (replies[0].outcome().code() == v1::Outcome::RUN_FINISHED) break;
    ASSERT_EQ(replies[0].outcome().code(), v1::Outcome::OK);
    ASSERT_GT(replies[0].rounds_size(), 0);
    for (const v1::RoundPlan& p : replies[0].rounds()) {
      served.push_back(p);
      ReportAll(p, 7);
      next = p.round() + 1;
    }
  }
  ASSERT_EQ(served.size(), expected.size());
  for (size_t i = 0; i < served.size(); ++i) {
    EXPECT_EQ(served[i].round(), expected[i].index);
    EXPECT_EQ(served[i].start_step(), expected[i].start_step);
    EXPECT_EQ(served[i].h(), expected[i].h);
    EXPECT_DOUBLE_EQ(served[i].lr(), expected[i].lr);
  }
  // Evaluations fall after the rounds that cross each epoch boundary, and at the end.
  int evals = 0;
  for (const auto& p : served) evals += p.eval_after() ? 1 : 0;
  EXPECT_GE(evals, recipe_.epochs);
  EXPECT_TRUE(served.back().eval_after());

  v1::ListRoundsReply rounds = controller_->Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(rounds.rounds_size(), static_cast<int>(expected.size()));
  EXPECT_EQ(rounds.rounds(0).workers(), world_);
  EXPECT_EQ(rounds.rounds(0).bytes(), 1000);
  EXPECT_DOUBLE_EQ(rounds.rounds(0).train_loss(), 1.0 + (world_ - 1) / 2.0);
  EXPECT_TRUE(rounds.rounds(0).identical());
  EXPECT_TRUE(rounds.rounds(0).digest_checked());

  v1::GetStatusReply status = controller_->Status(now_);
  EXPECT_EQ(status.state(), "RUNNING");
  EXPECT_EQ(status.step(), recipe_.TotalSteps());
  EXPECT_EQ(status.round(), static_cast<int64_t>(expected.size()));
  EXPECT_FALSE(controller_->Done());
  LeaveAll();
  EXPECT_EQ(controller_->Status(now_).state(), "FINISHED");
  EXPECT_TRUE(controller_->Done());
  EXPECT_FALSE(controller_->Failed());
}

TEST_P(RunControllerPeersTest, FlagsWorkersWhoseParametersDiffer) {
  std::vector<v1::NextRoundsReply> replies = Barrier(0);
  ReportAll(replies[0].rounds(0), /*digest of the last rank=*/8);
  v1::ListRoundsReply rounds = controller_->Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(rounds.rounds_size(), 1);
  EXPECT_FALSE(rounds.rounds(0).identical());
  EXPECT_TRUE(rounds.rounds(0).digest_checked());
}

TEST_P(RunControllerTest, RoundsWithoutDigestsAreNotChecked) {
  std::vector<v1::NextRoundsReply> replies = Barrier(0);
  ReportAll(replies[0].rounds(0), /*digest=*/0, /*others=*/0);
  v1::ListRoundsReply rounds = controller_->Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(rounds.rounds_size(), 1);
  EXPECT_FALSE(rounds.rounds(0).digest_checked());
  EXPECT_TRUE(rounds.rounds(0).identical()) << "nothing was compared, so nothing differed";
}

TEST_P(RunControllerPeersTest, OneWorkerWithoutADigestAmongOthersWithOneIsAMismatch) {
  std::vector<v1::NextRoundsReply> replies = Barrier(0);
  ReportAll(replies[0].rounds(0), /*digest of the last rank=*/0, /*others=*/7);
  v1::ListRoundsReply rounds = controller_->Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(rounds.rounds_size(), 1);
  EXPECT_TRUE(rounds.rounds(0).digest_checked());
  EXPECT_FALSE(rounds.rounds(0).identical());
}

TEST_P(RunControllerTest, AWorkerErrorEndsTheGenerationAndReleasesTheBarrier) {
  std::optional<v1::NextRoundsReply> waiting;
  if (world_ > 1) {
    ASSERT_TRUE(
        controller_->NextRounds(Ask(0, 0), now_, [&](const v1::NextRoundsReply& r) { waiting = r; })
            .ok());
  }
  v1::LeaveRequest l;
  l.set_worker_id("w" + std::to_string(world_ - 1));
  l.set_rank(world_ - 1);
  l.set_generation(generation_);
  l.set_error("out of memory");
  ASSERT_TRUE(controller_->Leave(l, now_).ok());
  if (world_ > 1) {
    // The survivors re-form the group without the failed worker.
    ASSERT_TRUE(waiting.has_value());
    EXPECT_EQ(waiting->outcome().code(), v1::Outcome::GENERATION_ENDED);
    EXPECT_NE(waiting->outcome().message().find("out of memory"), std::string::npos);
    EXPECT_FALSE(controller_->Failed());
    EXPECT_EQ(controller_->Status(now_).state(), "REGROUPING");
  } else {
    // Nobody is left who holds the model.
    EXPECT_TRUE(controller_->Failed());
    EXPECT_EQ(controller_->Status(now_).state(), "FAILED");
  }
}

TEST_P(RunControllerPeersTest, AStragglerPastTheRoundTimeoutIsEvicted) {
  std::optional<v1::NextRoundsReply> waiting;
  ASSERT_TRUE(
      controller_->NextRounds(Ask(0, 0), now_, [&](const v1::NextRoundsReply& r) { waiting = r; })
          .ok());
  controller_->Tick(now_ + absl::Seconds(29));
  EXPECT_FALSE(waiting.has_value());
  controller_->Tick(now_ + absl::Seconds(31));
  ASSERT_TRUE(waiting.has_value());
  EXPECT_EQ(waiting->outcome().code(), v1::Outcome::GENERATION_ENDED);
  EXPECT_NE(waiting->outcome().message().find("straggler"), std::string::npos);
  v1::GetStatusReply status = controller_->Status(now_ + absl::Seconds(31));
  EXPECT_EQ(status.state(), "REGROUPING");
  EXPECT_EQ(status.worker_info(world_ - 1).state(), "FAILED");
  EXPECT_EQ(status.worker_info(0).state(), "ACTIVE");
}

TEST_P(RunControllerPeersTest, ARetriedNextRoundsReplacesTheWaitingCallAndCountsOnce) {
  int first_calls = 0, second_calls = 0;
  std::optional<v1::NextRoundsReply> first, second;
  ASSERT_TRUE(controller_
                  ->NextRounds(Ask(0, 0), now_,
                               [&](const v1::NextRoundsReply& r) {
                                 ++first_calls;
                                 first = r;
                               })
                  .ok());
  // Rank 0 asks again (its call timed out on its side): the older call is answered TIMEOUT, and
  // rank 0 still counts once at the barrier.
  ASSERT_TRUE(controller_
                  ->NextRounds(Ask(0, 0), now_,
                               [&](const v1::NextRoundsReply& r) {
                                 ++second_calls;
                                 second = r;
                               })
                  .ok());
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->outcome().code(), v1::Outcome::TIMEOUT);
  EXPECT_FALSE(second.has_value());
  std::vector<std::optional<v1::NextRoundsReply>> others(world_);
  for (int rank = 1; rank < world_; ++rank) {
    ASSERT_TRUE(
        controller_
            ->NextRounds(Ask(rank, 0), now_,
                         [&others, rank](const v1::NextRoundsReply& r) { others[rank] = r; })
            .ok());
    if (rank < world_ - 1) {
      EXPECT_FALSE(second.has_value());
    }
  }
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->outcome().code(), v1::Outcome::OK);
  ASSERT_GT(second->rounds_size(), 0);
  for (int rank = 1; rank < world_; ++rank) {
    ASSERT_TRUE(others[rank].has_value());
    EXPECT_EQ(others[rank]->rounds(0).round(), second->rounds(0).round());
  }
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(second_calls, 1);
}

// A host agent brings several ranks in one call: they count as arrived together, and the call is
// answered once, with the same plans as everyone else.
TEST_P(RunControllerPeersTest, CoMembersArriveInOneCallAndItIsAnsweredOnce) {
  v1::NextRoundsRequest group = Ask(0, 0);
  for (int rank = 1; rank < world_ - 1; ++rank) {
    v1::CoMember* m = group.add_co_members();
    m->set_worker_id("w" + std::to_string(rank));
    m->set_rank(rank);
  }
  int group_calls = 0;
  std::optional<v1::NextRoundsReply> group_reply, last_reply;
  ASSERT_TRUE(controller_
                  ->NextRounds(group, now_,
                               [&](const v1::NextRoundsReply& r) {
                                 ++group_calls;
                                 group_reply = r;
                               })
                  .ok());
  EXPECT_FALSE(group_reply.has_value());
  ASSERT_TRUE(controller_
                  ->NextRounds(Ask(world_ - 1, 0), now_,
                               [&](const v1::NextRoundsReply& r) { last_reply = r; })
                  .ok());
  ASSERT_TRUE(group_reply.has_value());
  ASSERT_TRUE(last_reply.has_value());
  EXPECT_EQ(group_calls, 1);
  EXPECT_EQ(group_reply->outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(group_reply->SerializeAsString(), last_reply->SerializeAsString());

  // The next barrier: the whole world in one call releases at once.
  v1::NextRoundsRequest all =
      Ask(world_ - 1, group_reply->rounds(group_reply->rounds_size() - 1).round() + 1);
  for (int rank = 0; rank < world_ - 1; ++rank) {
    v1::CoMember* m = all.add_co_members();
    m->set_worker_id("w" + std::to_string(rank));
    m->set_rank(rank);
  }
  std::optional<v1::NextRoundsReply> all_reply;
  ASSERT_TRUE(
      controller_->NextRounds(all, now_, [&](const v1::NextRoundsReply& r) { all_reply = r; })
          .ok());
  ASSERT_TRUE(all_reply.has_value());
  EXPECT_EQ(all_reply->outcome().code(), v1::Outcome::OK);
}

TEST_P(RunControllerGroupTest, ARetriedCallForOneCoMemberSupersedesTheWholeGroupCall) {
  v1::NextRoundsRequest group = Ask(0, 0);
  v1::CoMember* m = group.add_co_members();
  m->set_worker_id("w1");
  m->set_rank(1);
  std::optional<v1::NextRoundsReply> group_reply, retry_reply;
  ASSERT_TRUE(
      controller_->NextRounds(group, now_, [&](const v1::NextRoundsReply& r) { group_reply = r; })
          .ok());
  ASSERT_TRUE(
      controller_
          ->NextRounds(Ask(1, 0), now_, [&](const v1::NextRoundsReply& r) { retry_reply = r; })
          .ok());
  ASSERT_TRUE(group_reply.has_value());
  EXPECT_EQ(group_reply->outcome().code(), v1::Outcome::TIMEOUT);
  // Rank 0 no longer counts: everyone else arriving does not release the barrier.
  std::vector<std::optional<v1::NextRoundsReply>> others(world_);
  for (int rank = 2; rank < world_; ++rank) {
    ASSERT_TRUE(
        controller_
            ->NextRounds(Ask(rank, 0), now_,
                         [&others, rank](const v1::NextRoundsReply& r) { others[rank] = r; })
            .ok());
  }
  EXPECT_FALSE(retry_reply.has_value());
  std::optional<v1::NextRoundsReply> zero;
  ASSERT_TRUE(
      controller_->NextRounds(Ask(0, 0), now_, [&](const v1::NextRoundsReply& r) { zero = r; })
          .ok());
  ASSERT_TRUE(zero.has_value());
  ASSERT_TRUE(retry_reply.has_value());
  EXPECT_EQ(zero->outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(retry_reply->outcome().code(), v1::Outcome::OK);
}

TEST_P(RunControllerPeersTest, RejectsACoMemberOutsideTheGenerationAndCountsNobody) {
  v1::NextRoundsRequest group = Ask(0, 0);
  v1::CoMember* m = group.add_co_members();
  m->set_worker_id("impostor");
  m->set_rank(world_ - 1);
  bool called = false;
  absl::Status s =
      controller_->NextRounds(group, now_, [&](const v1::NextRoundsReply&) { called = true; });
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(called);
  // Rank 0 was not counted either: the others arriving alone do not release the barrier.
  std::vector<std::optional<v1::NextRoundsReply>> got(world_);
  for (int rank = 1; rank < world_; ++rank) {
    ASSERT_TRUE(controller_
                    ->NextRounds(Ask(rank, 0), now_,
                                 [&got, rank](const v1::NextRoundsReply& r) { got[rank] = r; })
                    .ok());
  }
  for (int rank = 1; rank < world_; ++rank) EXPECT_FALSE(got[rank].has_value());
}

// A host agent beats once for its workers: the beat keeps every rank it names alive.
TEST_P(RunControllerPeersTest, AHeartbeatWithCoMembersKeepsThemAllAlive) {
  v1::HeartbeatRequest beat;
  beat.set_worker_id("w0");
  beat.set_rank(0);
  beat.set_generation(generation_);
  for (int rank = 1; rank < world_; ++rank) {
    v1::CoMember* m = beat.add_co_members();
    m->set_worker_id("w" + std::to_string(rank));
    m->set_rank(rank);
  }
  absl::StatusOr<v1::HeartbeatReply> reply = controller_->Heartbeat(beat, now_ + absl::Seconds(50));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->outcome().code(), v1::Outcome::OK);
  // 60 s after the Join, 20 s after the beat: everyone is alive (the timeout is 60 s).
  controller_->Tick(now_ + absl::Seconds(70));
  EXPECT_EQ(controller_->Status(now_ + absl::Seconds(70)).state(), "RUNNING");
  // 61 s after the beat, everyone has missed it: nobody is left to go on.
  controller_->Tick(now_ + absl::Seconds(111));
  v1::GetStatusReply status = controller_->Status(now_ + absl::Seconds(111));
  EXPECT_EQ(status.state(), "FAILED");
  EXPECT_NE(status.message().find("missed heartbeats"), std::string::npos) << status.message();

  // A co-member that is not a member refuses the whole beat.
  beat.mutable_co_members(0)->set_worker_id("impostor");
  EXPECT_FALSE(controller_->Heartbeat(beat, now_ + absl::Seconds(112)).ok());
}

// Found by coordinator_fuzz (fuzz/known/crash-unreleased-barrier-after-leave).
TEST_P(RunControllerPeersTest, AMemberLeavingBeforeAnyRoundReleasesThoseWaitingForIt) {
  std::vector<std::optional<v1::NextRoundsReply>> got(world_);
  for (int rank = 0; rank < world_ - 1; ++rank) {
    ASSERT_TRUE(controller_
                    ->NextRounds(Ask(rank, 0), now_,
                                 [&got, rank](const v1::NextRoundsReply& r) { got[rank] = r; })
                    .ok());
    EXPECT_FALSE(got[rank].has_value());
  }
  // The last member leaves cleanly before any round was handed out (a library program that only
  // met its peers): the others must not wait for it until the round timeout, or for ever.
  v1::LeaveRequest leave;
  leave.set_worker_id("w" + std::to_string(world_ - 1));
  leave.set_rank(world_ - 1);
  leave.set_generation(generation_);
  ASSERT_TRUE(controller_->Leave(leave, now_).ok());
  for (int rank = 0; rank < world_ - 1; ++rank) {
    ASSERT_TRUE(got[rank].has_value()) << "rank " << rank << " still waits";
    EXPECT_EQ(got[rank]->outcome().code(), v1::Outcome::OK) << got[rank]->outcome().message();
  }
}

TEST_P(RunControllerTest, RejectsBadRequests) {
  v1::JoinRequest extra;
  extra.set_worker_id("extra");
  absl::StatusOr<v1::JoinReply> full = controller_->JoinNow(extra, now_);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->outcome().code(), v1::Outcome::REJECTED);
  // A retried Join of a member gets its rank back.
  v1::JoinRequest again;
  again.set_worker_id("w0");
  EXPECT_EQ(controller_->JoinNow(again, now_)->rank(), 0);
  // Field checks (an empty worker id here) are the request validator's, before the controller.
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateJoin(v1::JoinRequest())));
  v1::JoinRequest future_state;
  future_state.set_worker_id("w0");
  future_state.set_next_round(5);  // no round has been served yet
  EXPECT_TRUE(absl::IsInvalidArgument(controller_->JoinNow(future_state, now_).status()));

  auto noop = [](const v1::NextRoundsReply&) { ADD_FAILURE() << "callback must not run"; };
  v1::NextRoundsRequest bad_rank = Ask(0, 0);
  bad_rank.set_rank(world_);
  EXPECT_TRUE(absl::IsInvalidArgument(controller_->NextRounds(bad_rank, now_, noop)));
  v1::NextRoundsRequest wrong_worker = Ask(0, 0);
  wrong_worker.set_worker_id("impostor");
  EXPECT_TRUE(absl::IsFailedPrecondition(controller_->NextRounds(wrong_worker, now_, noop)));
  v1::NextRoundsRequest old_gen = Ask(0, 0);  // a generation that does not exist yet
  old_gen.set_generation(generation_ + 5);
  EXPECT_TRUE(absl::IsFailedPrecondition(controller_->NextRounds(old_gen, now_, noop)));
  EXPECT_TRUE(absl::IsInvalidArgument(controller_->NextRounds(Ask(0, 99), now_, noop)));

  v1::ReportRequest report;
  report.set_worker_id("w0");
  report.set_rank(0);
  report.set_generation(generation_);
  report.add_rounds()->set_round(12345);
  EXPECT_TRUE(absl::IsInvalidArgument(controller_->Report(report, now_).status()));
}

TEST_P(RunControllerTest, WorkersThatOnlyMeetEndTheRunCleanly) {
  // Programs using the qsr library join for rendezvous, train their own rounds and leave.
  LeaveAll();
  EXPECT_EQ(controller_->Status(now_).state(), "FINISHED");
  EXPECT_NE(controller_->Status(now_).message().find("rendezvous only"), std::string::npos);
  EXPECT_FALSE(controller_->Failed());
  EXPECT_TRUE(controller_->Done());
}

TEST_P(RunControllerTest, EveryWorkerLeavingInTheMiddleOfThePlanFailsTheRun) {
  Barrier(0);
  for (int rank = 0; rank < world_; ++rank) {
    v1::LeaveRequest l;
    l.set_worker_id("w" + std::to_string(rank));
    l.set_rank(rank);
    l.set_generation(generation_);
    ASSERT_TRUE(controller_->Leave(l, now_).ok());
    // While a worker remains, the group re-forms around it.
    EXPECT_EQ(controller_->Failed(), rank == world_ - 1);
  }
  EXPECT_NE(controller_->Status(now_).message().find("left before the run ended"),
            std::string::npos);
  EXPECT_TRUE(controller_->Done());
}

TEST_P(RunControllerTest, PlansACheckpointEverySaveFreqEpochsAndAtTheEnd) {
  recipe_.save_freq = 2;
  RunController::Options options;
  options.plan_batch_steps = 1;
  controller_ = std::make_unique<RunController>(recipe_, options, nullptr);
  JoinAll();
  std::vector<int64_t> checkpoint_ends;
  int64_t next = 0;
  for (int guard = 0; guard < 1000; ++guard) {
    std::vector<v1::NextRoundsReply> replies = Barrier(next);
    if (replies[0].rounds_size() == 0) break;
    for (const v1::RoundPlan& plan : replies[0].rounds()) {
      if (plan.checkpoint_after()) checkpoint_ends.push_back(plan.start_step() + plan.h());
      ReportAll(plan, 7);
      next = plan.round() + 1;
    }
  }
  // 3 epochs of 20 steps, save_freq 2: the round that reaches step 40, and the last one (60).
  ASSERT_EQ(checkpoint_ends.size(), 2u);
  EXPECT_GE(checkpoint_ends[0], 40);
  EXPECT_LT(checkpoint_ends[0], 60);
  EXPECT_EQ(checkpoint_ends[1], 60);

  v1::ReportRequest r;
  r.set_worker_id("w0");
  r.set_rank(0);
  r.set_generation(generation_);
  v1::CheckpointReport* c = r.add_checkpoints();
  c->set_step(checkpoint_ends[0]);
  c->set_manifest("/ckpt/step=40/MANIFEST.json");
  ASSERT_TRUE(controller_->Report(r, now_).ok());
  EXPECT_EQ(controller_->Status(now_).last_checkpoint(), "/ckpt/step=40/MANIFEST.json");
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, RunControllerTest, ::testing::Values(1, 2, 3));
INSTANTIATE_TEST_SUITE_P(WorldSizes, RunControllerPeersTest, ::testing::Values(2, 3));
INSTANTIATE_TEST_SUITE_P(WorldSizes, RunControllerGroupTest, ::testing::Values(3));

}  // namespace
}  // namespace qsr
