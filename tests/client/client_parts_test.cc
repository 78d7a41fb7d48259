// The worker's client parts against FakeCoordinator, in one process: joining a group, the
// heartbeat that learns of an ended generation, the report sender and the rendezvous store.
#include <thread>

#include "absl/synchronization/notification.h"
#include "client/coordinator_client.h"
#include "client/heartbeater.h"
#include "client/report_sender.h"
#include "gtest/gtest.h"
#include "tests/client/fake_coordinator.h"

namespace qsr {
namespace {

v1::JoinRequest JoinAs(const std::string& worker_id, int64_t next_round = 0) {
  v1::JoinRequest request;
  request.set_worker_id(worker_id);
  request.set_next_round(next_round);
  return request;
}

TEST(JoinWithRetryTest, TwoWorkersFormOneGenerationWithDistinctRanks) {
  FakeCoordinator fake(FakeRun{});
  fake.AddGeneration(FakeGeneration{2});
  absl::StatusOr<v1::JoinReply> b;
  std::thread late([&] { b = JoinWithRetry(&fake, JoinAs("b"), absl::Seconds(30)); });
  absl::StatusOr<v1::JoinReply> a = JoinWithRetry(&fake, JoinAs("a"), absl::Seconds(30));
  late.join();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(b->outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(a->rank(), 0);
  EXPECT_EQ(b->rank(), 1);
  EXPECT_EQ(a->world_size(), 2);
  EXPECT_EQ(a->generation(), 1);
  EXPECT_EQ(b->generation(), 1);
}

TEST(JoinWithRetryTest, GivesUpWithTimeoutWhenTheGroupNeverForms) {
  FakeCoordinator fake(FakeRun{});
  fake.AddGeneration(FakeGeneration{2});
  absl::StatusOr<v1::JoinReply> a = JoinWithRetry(&fake, JoinAs("a"), absl::Milliseconds(300));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->outcome().code(), v1::Outcome::TIMEOUT);
}

TEST(JoinWithRetryTest, ReturnsARefusalAtOnce) {
  FakeCoordinator fake(FakeRun{});  // no generation scripted
  absl::StatusOr<v1::JoinReply> a = JoinWithRetry(&fake, JoinAs("a"), absl::Seconds(30));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->outcome().code(), v1::Outcome::REJECTED);
  EXPECT_EQ(fake.joins().size(), 1u);
}

TEST(HeartbeaterTest, CallsBackOnceWhenTheCoordinatorEndsTheGeneration) {
  FakeRun run;
  run.rounds = 4;
  FakeCoordinator fake(run);
  fake.AddGeneration(FakeGeneration{1, FakeGeneration::EndBy::kHeartbeat, 0});
  absl::StatusOr<v1::JoinReply> joined = JoinWithRetry(&fake, JoinAs("a"), absl::Seconds(30));
  ASSERT_TRUE(joined.ok()) << joined.status();
  v1::NextRoundsRequest next;
  next.set_worker_id("a");
  next.set_generation(1);
  absl::StatusOr<v1::NextRoundsReply> rounds =
      fake.NextRounds(next, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(rounds.ok());
  ASSERT_EQ(rounds->rounds_size(), 1);  // the batch stops at the round that ends the generation

  absl::Notification ended;
  int calls = 0;
  int64_t ended_generation = -1;
  Heartbeater beats(&fake, [&](int64_t generation, const v1::Outcome& outcome) {
    ++calls;
    ended_generation = generation;
    EXPECT_EQ(outcome.code(), v1::Outcome::GENERATION_ENDED);
    ended.Notify();
  });
  beats.SetIdentity("a", 0, 1, absl::Milliseconds(10));
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(30)));
  beats.Stop();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(ended_generation, 1);
  // The beat that learnt of the end was the last one of that generation.
  ASSERT_EQ(fake.heartbeats().size(), 1u);
  EXPECT_EQ(fake.heartbeats().front().worker_id(), "a");
  // And NextRounds says the same from now on.
  next.set_next_round(1);
  rounds = fake.NextRounds(next, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(rounds.ok());
  EXPECT_EQ(rounds->outcome().code(), v1::Outcome::GENERATION_ENDED);
}

TEST(ReportSenderTest, FlushDeliversEveryReportWithTheWorkersIdentity) {
  FakeCoordinator fake(FakeRun{});
  v1::ReportRequest identity;
  identity.set_worker_id("a");
  identity.set_rank(1);
  identity.set_generation(3);
  ReportSender sender(&fake, identity, absl::Hours(1));  // only Flush sends
  for (int r = 0; r < 3; ++r) {
    v1::RoundReport round;
    round.set_round(r);
    sender.AddRound(round);
  }
  v1::EvalReport eval;
  eval.set_step(6);
  sender.AddEval(eval);
  ASSERT_TRUE(sender.Flush(absl::Now() + absl::Seconds(10)).ok());
  std::vector<v1::RoundReport> rounds = fake.RoundsOf("a");
  ASSERT_EQ(rounds.size(), 3u);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(rounds[r].round(), r);
  EXPECT_EQ(fake.RoundGenerationsOf("a"), std::vector<int64_t>({3, 3, 3}));
  ASSERT_EQ(fake.EvalsOf("a").size(), 1u);
  EXPECT_EQ(fake.EvalsOf("a")[0].step(), 6);
  EXPECT_EQ(fake.reports()[0].rank(), 1);
}

TEST(CoordinatorStoreTest, GetWaitsForTheKeyAndTimesOutWithoutIt) {
  FakeCoordinator fake(FakeRun{});
  CoordinatorStore store(&fake);
  std::thread setter([&] { ASSERT_TRUE(store.Set("k", "v").ok()); });
  absl::StatusOr<std::vector<std::string>> got = store.Get({"k"}, absl::Now() + absl::Seconds(30));
  setter.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::vector<std::string>({"v"}));
  absl::StatusOr<std::vector<std::string>> missing =
      store.Get({"k", "absent"}, absl::Now() + absl::Milliseconds(100));
  EXPECT_TRUE(absl::IsDeadlineExceeded(missing.status())) << missing.status();
  EXPECT_EQ(fake.kv_keys(), std::vector<std::string>({"k"}));
}

}  // namespace
}  // namespace qsr
