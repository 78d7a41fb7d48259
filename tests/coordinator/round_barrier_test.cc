// RoundBarrier on its own: who waits for which round, superseded calls, co-members, release.
#include "coordinator/round_barrier.h"

#include <functional>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

class RoundBarrierTest : public ::testing::Test {
 protected:
  // A callback that records the outcome codes it is answered with.
  RoundBarrier::Callback Record(std::vector<v1::Outcome::Code>* got) {
    return [got](const v1::NextRoundsReply& r) { got->push_back(r.outcome().code()); };
  }
  void RunCompletions() {
    for (auto& c : completions_) c();
    completions_.clear();
  }

  RoundBarrier barrier_;
  std::vector<RoundBarrier::Completion> completions_;
  const absl::Time now_ = absl::FromUnixSeconds(1700000000);
  const absl::Duration timeout_ = absl::Seconds(5);
};

TEST_F(RoundBarrierTest, TheFirstArrivalOpensTheBarrierForItsRound) {
  EXPECT_FALSE(barrier_.open());
  EXPECT_EQ(barrier_.round(), -1);
  std::vector<v1::Outcome::Code> got;
  ASSERT_TRUE(barrier_.Arrive(7, {1}, 3, now_, timeout_, Record(&got), &completions_).ok());
  EXPECT_TRUE(barrier_.open());
  EXPECT_EQ(barrier_.round(), 7);
  EXPECT_EQ(barrier_.waiting(), 1);
  EXPECT_TRUE(barrier_.Waiting(1));
  EXPECT_FALSE(barrier_.Waiting(0));
  EXPECT_FALSE(barrier_.Waiting(5));  // outside the group: not waiting, no crash
  EXPECT_TRUE(completions_.empty());
}

TEST_F(RoundBarrierTest, AnArrivalForAnotherRoundIsRefusedAndChangesNothing) {
  std::vector<v1::Outcome::Code> got;
  ASSERT_TRUE(barrier_.Arrive(3, {0}, 2, now_, timeout_, Record(&got), &completions_).ok());
  absl::Status s = barrier_.Arrive(4, {1}, 2, now_, timeout_, Record(&got), &completions_);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(s.message().find("rank 1 asks for round 4 while the group is at round 3"),
            std::string::npos)
      << s;
  EXPECT_EQ(barrier_.waiting(), 1);
  EXPECT_FALSE(barrier_.Waiting(1));
}

TEST_F(RoundBarrierTest, ARankArrivingAgainSupersedesItsOlderCallAndCountsOnce) {
  std::vector<v1::Outcome::Code> first, second;
  ASSERT_TRUE(barrier_.Arrive(0, {0}, 2, now_, timeout_, Record(&first), &completions_).ok());
  ASSERT_TRUE(barrier_.Arrive(0, {0}, 2, now_, timeout_, Record(&second), &completions_).ok());
  EXPECT_EQ(barrier_.waiting(), 1);
  RunCompletions();
  EXPECT_EQ(first, std::vector<v1::Outcome::Code>{v1::Outcome::TIMEOUT});
  EXPECT_TRUE(second.empty());
}

TEST_F(RoundBarrierTest, ACallWithCoMembersHoldsEachRankAndIsAnsweredOnce) {
  std::vector<v1::Outcome::Code> agent, retried;
  ASSERT_TRUE(barrier_.Arrive(2, {0, 1, 2}, 4, now_, timeout_, Record(&agent), &completions_).ok());
  EXPECT_EQ(barrier_.waiting(), 3);
  // Rank 1 asks again on its own: the whole group call is superseded, its ranks stop counting.
  ASSERT_TRUE(barrier_.Arrive(2, {1}, 4, now_, timeout_, Record(&retried), &completions_).ok());
  EXPECT_EQ(barrier_.waiting(), 1);
  EXPECT_FALSE(barrier_.Waiting(0));
  EXPECT_TRUE(barrier_.Waiting(1));
  RunCompletions();
  EXPECT_EQ(agent, std::vector<v1::Outcome::Code>{v1::Outcome::TIMEOUT});

  v1::NextRoundsReply ok;
  ok.mutable_outcome()->set_code(v1::Outcome::OK);
  ok.add_rounds()->set_round(2);
  barrier_.Release(ok, &completions_);
  RunCompletions();
  EXPECT_EQ(agent.size(), 1u);  // answered once, not again at release
  EXPECT_EQ(retried, std::vector<v1::Outcome::Code>{v1::Outcome::OK});
}

TEST_F(RoundBarrierTest, ReleaseAnswersEveryCallWithTheSameReplyAndCloses) {
  std::vector<v1::Outcome::Code> got;
  std::vector<int64_t> rounds;
  auto record_round = [&](const v1::NextRoundsReply& r) {
    got.push_back(r.outcome().code());
    rounds.push_back(r.rounds_size() > 0 ? r.rounds(0).round() : -1);
  };
  ASSERT_TRUE(barrier_.Arrive(5, {0}, 3, now_, timeout_, record_round, &completions_).ok());
  ASSERT_TRUE(barrier_.Arrive(5, {2, 1}, 3, now_, timeout_, record_round, &completions_).ok());
  EXPECT_EQ(barrier_.waiting(), 3);
  v1::NextRoundsReply reply;
  reply.mutable_outcome()->set_code(v1::Outcome::OK);
  reply.add_rounds()->set_round(5);
  barrier_.Release(reply, &completions_);
  EXPECT_FALSE(barrier_.open());
  EXPECT_EQ(barrier_.waiting(), 0);
  EXPECT_TRUE(got.empty());  // nothing runs until the caller runs the completions
  RunCompletions();
  EXPECT_EQ(got, (std::vector<v1::Outcome::Code>{v1::Outcome::OK, v1::Outcome::OK}));
  EXPECT_EQ(rounds, (std::vector<int64_t>{5, 5}));
  // The next round opens afresh.
  ASSERT_TRUE(barrier_.Arrive(6, {0}, 3, now_, timeout_, record_round, &completions_).ok());
  EXPECT_EQ(barrier_.round(), 6);
}

TEST_F(RoundBarrierTest, IsOverdueFromTheFirstArrivalPlusTheTimeout) {
  EXPECT_FALSE(barrier_.Overdue(now_ + absl::Hours(1)));  // closed: never overdue
  std::vector<v1::Outcome::Code> got;
  ASSERT_TRUE(barrier_.Arrive(0, {0}, 2, now_, timeout_, Record(&got), &completions_).ok());
  // A later arrival does not move the deadline.
  ASSERT_TRUE(
      barrier_.Arrive(0, {1}, 2, now_ + absl::Seconds(3), timeout_, Record(&got), &completions_)
          .ok());
  EXPECT_FALSE(barrier_.Overdue(now_ + absl::Seconds(4)));
  EXPECT_TRUE(barrier_.Overdue(now_ + timeout_));
  barrier_.Release(v1::NextRoundsReply(), &completions_);
  RunCompletions();
  EXPECT_EQ(got.size(), 2u);
  EXPECT_FALSE(barrier_.Overdue(now_ + timeout_));
}

}  // namespace
}  // namespace qsr
