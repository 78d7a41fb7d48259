#include "agent/barrier_coalescer.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace qsr {
namespace {

BarrierCoalescer::Arrival At(uint64_t id, int rank, int64_t generation, int64_t round) {
  BarrierCoalescer::Arrival a;
  a.id = id;
  a.worker_id = "w" + std::to_string(rank);
  a.rank = rank;
  a.generation = generation;
  a.next_round = round;
  a.deadline = absl::UnixEpoch() + absl::Seconds(100 + id);
  return a;
}

class BarrierCoalescerTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    local_ = GetParam();
    for (int r = 0; r < local_; ++r) c_.Admitted("w" + std::to_string(r), r, 1);
  }
  int local_ = 0;
  absl::Time now_ = absl::UnixEpoch();
  BarrierCoalescer c_{absl::Milliseconds(500)};
  std::optional<uint64_t> superseded_;
};

// Only hosts with several local members, where one can wait for another, so that no test is
// skipped (in CI a skip reads as a failure: scripts/test.sh).
class BarrierCoalescerPeersTest : public BarrierCoalescerTest {};

TEST_P(BarrierCoalescerTest, AGroupGoesOutWhenEveryLocalMemberHasArrived) {
  EXPECT_EQ(c_.LocalMembers(1), local_);
  for (int r = 0; r < local_ - 1; ++r) {
    EXPECT_TRUE(c_.Arrive(At(r + 1, r, 1, 0), now_, &superseded_).empty());
    EXPECT_FALSE(superseded_.has_value());
  }
  std::vector<BarrierCoalescer::Group> out =
      c_.Arrive(At(local_, local_ - 1, 1, 0), now_, &superseded_);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].generation, 1);
  EXPECT_EQ(out[0].next_round, 0);
  ASSERT_EQ(static_cast<int>(out[0].arrivals.size()), local_);
  for (int r = 0; r < local_; ++r) EXPECT_EQ(out[0].arrivals[r].rank, r);
  // The group's call ends with the earliest of its callers' deadlines.
  EXPECT_EQ(out[0].deadline, absl::UnixEpoch() + absl::Seconds(101));
  EXPECT_EQ(c_.held(), 0);
  EXPECT_EQ(c_.NextExpiry(), absl::InfiniteFuture());
}

TEST_P(BarrierCoalescerPeersTest, ALateMemberDoesNotHideTheOthersPastTheWindow) {
  for (int r = 0; r < local_ - 1; ++r) c_.Arrive(At(r + 1, r, 1, 0), now_, &superseded_);
  EXPECT_EQ(c_.NextExpiry(), now_ + absl::Milliseconds(500));
  EXPECT_TRUE(c_.Expire(now_ + absl::Milliseconds(499)).empty());
  std::vector<BarrierCoalescer::Group> out = c_.Expire(now_ + absl::Milliseconds(500));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(static_cast<int>(out[0].arrivals.size()), local_ - 1);
  // The late one, alone now, waits its own window (its peers are already upstream).
  EXPECT_TRUE(c_.Arrive(At(99, local_ - 1, 1, 0), now_ + absl::Seconds(1), &superseded_).empty());
  out = c_.Expire(now_ + absl::Milliseconds(1500));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].arrivals[0].rank, local_ - 1);
}

TEST_P(BarrierCoalescerPeersTest, ARetryReplacesTheHeldCallOfTheSameWorker) {
  c_.Arrive(At(1, 0, 1, 0), now_, &superseded_);
  EXPECT_TRUE(c_.Arrive(At(2, 0, 1, 0), now_, &superseded_).empty());
  ASSERT_TRUE(superseded_.has_value());
  EXPECT_EQ(*superseded_, 1u);
  EXPECT_EQ(c_.held(), 1);
  std::vector<BarrierCoalescer::Group> out;
  for (int r = 1; r < local_; ++r) out = c_.Arrive(At(10 + r, r, 1, 0), now_, &superseded_);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].arrivals[0].id, 2u);
}

TEST_P(BarrierCoalescerPeersTest, LeavingCompletesAGroupThatWaitedForTheLeaver) {
  for (int r = 0; r < local_ - 1; ++r) c_.Arrive(At(r + 1, r, 1, 0), now_, &superseded_);
  std::vector<BarrierCoalescer::Group> out = c_.Left("w" + std::to_string(local_ - 1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(static_cast<int>(out[0].arrivals.size()), local_ - 1);
  EXPECT_EQ(c_.LocalMembers(1), local_ - 1);
}

TEST_P(BarrierCoalescerTest, FlushSendsAnEndedGenerationsCallsAndKeepsOthers) {
  c_.Admitted("x", 0, 2);  // a worker already in generation 2: one local member there
  if (local_ > 1) c_.Arrive(At(1, 0, 1, 3), now_, &superseded_);
  std::vector<BarrierCoalescer::Group> out = c_.Flush(1);
  EXPECT_EQ(out.size(), local_ > 1 ? 1u : 0u);
  EXPECT_EQ(c_.held(), 0);
}

TEST_P(BarrierCoalescerTest, AJoinToANewGenerationMovesTheMember) {
  c_.Admitted("w0", 5, 2);
  EXPECT_EQ(c_.LocalMembers(1), local_ - 1);
  EXPECT_EQ(c_.LocalMembers(2), 1);
  // Alone in generation 2: its call goes out at once.
  BarrierCoalescer::Arrival a = At(1, 5, 2, 0);
  a.worker_id = "w0";
  std::vector<BarrierCoalescer::Group> out = c_.Arrive(a, now_, &superseded_);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].arrivals[0].worker_id, "w0");
  EXPECT_EQ(out[0].arrivals[0].rank, 5);
}

TEST(BarrierCoalescerUnknownTest, AGenerationTheAgentHasNotSeenIsNotHeld) {
  BarrierCoalescer c(absl::Seconds(1));
  std::optional<uint64_t> superseded;
  std::vector<BarrierCoalescer::Group> out =
      c.Arrive(At(1, 3, 7, 0), absl::UnixEpoch(), &superseded);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].arrivals.size(), 1u);
}

// A worker the agent does not know in this generation (it joined through another route, or
// before the agent restarted) goes out alone at once, and the members' group is not held for it.
TEST_P(BarrierCoalescerTest, AnUnknownWorkerIsNotHeldAndDoesNotCountForTheGroup) {
  BarrierCoalescer::Arrival stranger = At(100, local_, 1, 0);
  stranger.worker_id = "stranger";
  std::vector<BarrierCoalescer::Group> out = c_.Arrive(stranger, now_, &superseded_);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].arrivals.size(), 1u);
  EXPECT_EQ(out[0].arrivals[0].worker_id, "stranger");
  EXPECT_EQ(c_.held(), 0);
  // The members still go out together, when the last of them arrives.
  for (int r = 0; r < local_; ++r) {
    out = c_.Arrive(At(r + 1, r, 1, 0), now_, &superseded_);
    ASSERT_EQ(out.size(), r + 1 == local_ ? 1u : 0u) << r;
  }
  EXPECT_EQ(out[0].arrivals.size(), static_cast<size_t>(local_));
}

TEST_P(BarrierCoalescerTest, ConfirmedWorkersAreHeldWithTheMembersButNotMovedBack) {
  // Confirmed by the coordinator (an OK heartbeat or barrier answer): now a member.
  c_.Confirmed("late", local_, 1);
  EXPECT_EQ(c_.LocalMembers(1), local_ + 1);
  std::vector<BarrierCoalescer::Group> out;
  for (int r = 0; r < local_; ++r) {
    out = c_.Arrive(At(r + 1, r, 1, 0), now_, &superseded_);
    EXPECT_TRUE(out.empty()) << r;
  }
  BarrierCoalescer::Arrival late = At(100, local_, 1, 0);
  late.worker_id = "late";
  out = c_.Arrive(late, now_, &superseded_);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].arrivals.size(), static_cast<size_t>(local_ + 1));
  // An answer about an older generation does not take a worker back from a newer one.
  c_.Admitted("w0", 0, 2);
  c_.Confirmed("w0", 0, 1);
  EXPECT_EQ(c_.LocalMembers(2), 1);
  EXPECT_EQ(c_.LocalMembers(1), local_);
}

INSTANTIATE_TEST_SUITE_P(LocalMembers, BarrierCoalescerTest, ::testing::Values(1, 2, 8));
INSTANTIATE_TEST_SUITE_P(LocalMembers, BarrierCoalescerPeersTest, ::testing::Values(2, 8));

}  // namespace
}  // namespace qsr
