// The host agent in-process between real gRPC workers and a real coordinator: whole runs through
// one or two agents, the barrier window, shutdown, bad flags, and the barrier stream between an
// agent and the coordinator. FakeWorkers (no LibTorch) speak
// the worker protocol; training_test runs qsr-worker processes through qsr-agent.
#include "agent/host_agent.h"

#include <grpcpp/grpcpp.h>

#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/barrier_stream.h"
#include "coordinator/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/coordinator/test_recipe.h"
#include "tests/integration/fake_workers.h"

namespace qsr {
namespace {

constexpr absl::Duration kDeadline = absl::Seconds(60);

std::unique_ptr<CoordinatorServer> StartCoordinator(int workers) {
  CoordinatorServer::Options options;
  options.run.run_id = "agent-test";
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(testing::SmallQsrRecipe(workers), options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

std::unique_ptr<HostAgent> StartAgent(const std::string& coordinator,
                                      absl::Duration window = absl::Milliseconds(500)) {
  HostAgent::Options options;
  options.coordinator = coordinator;
  options.window = window;
  absl::StatusOr<std::unique_ptr<HostAgent>> agent = HostAgent::Start(options);
  EXPECT_TRUE(agent.ok()) << agent.status();
  return agent.ok() ? std::move(*agent) : nullptr;
}

class HostAgentRunTest : public ::testing::TestWithParam<int> {};

// Every worker of the run behind one agent: the run completes, and the coordinator answers one
// barrier call per barrier instead of one per worker.
TEST_P(HostAgentRunTest, ARunThroughOneAgentCompletesWithOneBarrierCallPerBarrier) {
  const int world = GetParam();
  std::unique_ptr<CoordinatorServer> coordinator = StartCoordinator(world);
  ASSERT_NE(coordinator, nullptr);
  std::unique_ptr<HostAgent> agent = StartAgent(coordinator->address());
  ASSERT_NE(agent, nullptr);
  testing::FakeWorkers::Options options;
  options.workers = world;
  options.timeout = kDeadline;
  testing::FakeWorkers workers(agent->address(), options);
  ASSERT_TRUE(workers.Wait().ok());
  ASSERT_TRUE(coordinator->AwaitDone(absl::Now() + kDeadline));
  v1::GetStatusReply status = coordinator->controller().Status(absl::Now());
  EXPECT_EQ(status.state(), "FINISHED") << status.message();
  EXPECT_EQ(status.step(), testing::SmallQsrRecipe(world).TotalSteps());

  AgentService::Stats stats = agent->stats();
  RecordProperty("barrier_calls", std::to_string(stats.barrier_calls));
  RecordProperty("upstream_barrier_calls", std::to_string(stats.upstream_barrier_calls));
  EXPECT_GT(stats.barrier_calls, 0);
  EXPECT_GT(stats.forwarded_calls, 0);
  // Workers that reach a barrier within the window go up together (a slow machine may split a
  // group, hence no exact count).
  EXPECT_LE(stats.upstream_barrier_calls * world, stats.barrier_calls * 3 / 2 + world)
      << stats.upstream_barrier_calls << " upstream for " << stats.barrier_calls << " local";
  if (world > 1) {
    EXPECT_LT(stats.upstream_barrier_calls, stats.barrier_calls);
  }
}

// Two hosts, each with its agent and half of the workers.
TEST_P(HostAgentRunTest, ARunAcrossTwoAgentsCompletes) {
  const int per_host = GetParam();
  std::unique_ptr<CoordinatorServer> coordinator = StartCoordinator(2 * per_host);
  ASSERT_NE(coordinator, nullptr);
  std::unique_ptr<HostAgent> a = StartAgent(coordinator->address());
  std::unique_ptr<HostAgent> b = StartAgent(coordinator->address());
  ASSERT_TRUE(a != nullptr && b != nullptr);
  testing::FakeWorkers::Options options;
  options.workers = per_host;
  options.timeout = kDeadline;
  options.id_prefix = "a-";
  testing::FakeWorkers on_a(a->address(), options);
  options.id_prefix = "b-";
  testing::FakeWorkers on_b(b->address(), options);
  ASSERT_TRUE(on_a.Wait().ok());
  ASSERT_TRUE(on_b.Wait().ok());
  ASSERT_TRUE(coordinator->AwaitDone(absl::Now() + kDeadline));
  EXPECT_EQ(coordinator->controller().Status(absl::Now()).state(), "FINISHED");
  EXPECT_GT(a->stats().upstream_barrier_calls, 0);
  EXPECT_GT(b->stats().upstream_barrier_calls, 0);
}

INSTANTIATE_TEST_SUITE_P(Workers, HostAgentRunTest, ::testing::Values(1, 2, 4));

// Two workers behind an agent, driven call by call.
class HostAgentCallTest : public ::testing::Test {
 protected:
  // The agent's barrier window.
  virtual absl::Duration Window() const { return absl::Milliseconds(200); }
  // Whether the workers join through the agent (false: straight to the coordinator, as they did
  // before an agent restarted; the agent has then seen no Join).
  virtual bool JoinThroughAgent() const { return true; }

  void SetUp() override {
    coordinator_ = StartCoordinator(2);
    ASSERT_NE(coordinator_, nullptr);
    agent_ = StartAgent(coordinator_->address(), Window());
    ASSERT_NE(agent_, nullptr);
    stub_ = v1::Coordinator::NewStub(
        grpc::CreateChannel(agent_->address(), grpc::InsecureChannelCredentials()));
    join_stub_ = JoinThroughAgent()
                     ? stub_.get()
                     : (direct_stub_ = v1::Coordinator::NewStub(grpc::CreateChannel(
                            coordinator_->address(), grpc::InsecureChannelCredentials())))
                           .get();
    // Join blocks until both have joined: one thread each.
    std::thread other([this] { join_[1] = Join(1); });
    join_[0] = Join(0);
    other.join();
    ASSERT_EQ(join_[0].outcome().code(), v1::Outcome::OK);
    ASSERT_EQ(join_[1].outcome().code(), v1::Outcome::OK);
  }

  v1::JoinReply Join(int i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
    v1::JoinRequest request;
    request.set_worker_id(absl::StrCat("w", i));
    v1::JoinReply reply;
    grpc::Status s = join_stub_->Join(&ctx, request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return reply;
  }

  // NextRounds for worker `i` on a thread of its own; `done` is notified with the result.
  struct Pending {
    grpc::ClientContext ctx;
    v1::NextRoundsReply reply;
    grpc::Status status;
    absl::Notification done;
  };
  void Ask(int i, int64_t next_round, Pending* p) {
    v1::NextRoundsRequest request;
    request.set_worker_id(absl::StrCat("w", i));
    request.set_rank(join_[i].rank());
    request.set_generation(join_[i].generation());
    request.set_next_round(next_round);
    p->ctx.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
    stub_->async()->NextRounds(&p->ctx, &request, &p->reply, [p](grpc::Status s) {
      p->status = s;
      p->done.Notify();
    });
  }

  grpc::Status Beat(int i, v1::HeartbeatReply* reply) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
    v1::HeartbeatRequest request;
    request.set_worker_id(absl::StrCat("w", i));
    request.set_rank(join_[i].rank());
    request.set_generation(join_[i].generation());
    return stub_->Heartbeat(&ctx, request, reply);
  }

  // Polls the agent's counters (they move on gRPC threads) until `pred` holds or the deadline.
  template <typename Pred>
  bool AwaitStats(Pred pred) {
    const absl::Time deadline = absl::Now() + kDeadline;
    while (!pred(agent_->stats())) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }

  std::unique_ptr<CoordinatorServer> coordinator_;
  std::unique_ptr<HostAgent> agent_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::unique_ptr<v1::Coordinator::Stub> direct_stub_;
  v1::Coordinator::Stub* join_stub_ = nullptr;
  v1::JoinReply join_[2];
};

// The window is longer than any test: a group goes up only when every member has arrived.
class HostAgentLongWindowTest : public HostAgentCallTest {
 protected:
  absl::Duration Window() const override { return absl::Hours(1); }
};

// The workers joined before this agent started (it restarted): it must learn its members from the
// coordinator's answers.
class HostAgentRestartTest : public HostAgentLongWindowTest {
 protected:
  bool JoinThroughAgent() const override { return false; }

  // Both workers' barrier for `round` through the agent; returns the upstream calls it took.
  int64_t Barrier(int64_t round) {
    const int64_t before = agent_->stats().upstream_barrier_calls;
    Pending first, second;
    Ask(0, round, &first);
    Ask(1, round, &second);
    EXPECT_TRUE(first.done.WaitForNotificationWithTimeout(kDeadline));
    EXPECT_TRUE(second.done.WaitForNotificationWithTimeout(kDeadline));
    EXPECT_TRUE(first.status.ok()) << first.status.error_message();
    EXPECT_EQ(first.reply.outcome().code(), v1::Outcome::OK);
    EXPECT_EQ(first.reply.SerializeAsString(), second.reply.SerializeAsString());
    return agent_->stats().upstream_barrier_calls - before;
  }
};

TEST_F(HostAgentCallTest, AHeldCallGoesUpstreamAfterTheWindowAndIsReleasedWithItsPeer) {
  Pending first, second;
  Ask(0, 0, &first);
  // Alone past the window, rank 0's call goes to the coordinator by itself...
  ASSERT_TRUE(
      AwaitStats([](const AgentService::Stats& s) { return s.upstream_barrier_calls == 1; }));
  // ...and waits there for rank 1, which follows in a call of its own.
  EXPECT_FALSE(first.done.HasBeenNotified());
  Ask(1, 0, &second);
  ASSERT_TRUE(first.done.WaitForNotificationWithTimeout(kDeadline));
  ASSERT_TRUE(second.done.WaitForNotificationWithTimeout(kDeadline));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_EQ(first.reply.outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(first.reply.SerializeAsString(), second.reply.SerializeAsString());
  EXPECT_EQ(agent_->stats().upstream_barrier_calls, 2);
}

TEST_F(HostAgentLongWindowTest, BothMembersGoUpAsOneCall) {
  Pending first, second;
  Ask(0, 0, &first);
  Ask(1, 0, &second);
  ASSERT_TRUE(first.done.WaitForNotificationWithTimeout(kDeadline));
  ASSERT_TRUE(second.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_EQ(first.reply.outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(first.reply.SerializeAsString(), second.reply.SerializeAsString());
  EXPECT_EQ(agent_->stats().upstream_barrier_calls, 1);
  EXPECT_EQ(agent_->stats().barrier_calls, 2);
}

TEST_F(HostAgentRestartTest, MembersAreRelearnedFromTheFirstBarriersAnswer) {
  EXPECT_EQ(agent_->stats().known_workers, 0);
  // Strangers to the agent: each call goes up on its own, at once (none waits for the window).
  EXPECT_EQ(Barrier(0), 2);
  // The coordinator's OK made them members: the next barrier is one call.
  EXPECT_EQ(agent_->stats().known_workers, 2);
  EXPECT_EQ(Barrier(1), 1);
}

TEST_F(HostAgentRestartTest, MembersAreRelearnedFromAnAcceptedHeartbeat) {
  for (int i = 0; i < 2; ++i) {
    v1::HeartbeatReply reply;
    grpc::Status s = Beat(i, &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  // One interval later the agent beats for both, and the coordinator's OK makes them members.
  ASSERT_TRUE(AwaitStats([](const AgentService::Stats& s) { return s.known_workers == 2; }));
  EXPECT_EQ(agent_->stats().upstream_heartbeats, 1);
  EXPECT_EQ(Barrier(0), 1);
}

TEST_F(HostAgentCallTest, ACoMemberTheCoordinatorRefusesGetsItsOwnError) {
  // Rank 1 asks under a worker id that is not its own: the group is refused, then each call is
  // sent on its own, so rank 0 waits at the barrier while the impostor hears NOT_FOUND or
  // INVALID_ARGUMENT.
  Pending good, bad;
  Ask(0, 0, &good);
  v1::NextRoundsRequest request;
  request.set_worker_id("impostor");
  request.set_rank(join_[1].rank());
  request.set_generation(join_[1].generation());
  request.set_next_round(0);
  bad.ctx.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
  stub_->async()->NextRounds(&bad.ctx, &request, &bad.reply, [&bad](grpc::Status s) {
    bad.status = s;
    bad.done.Notify();
  });
  ASSERT_TRUE(bad.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_FALSE(bad.status.ok());
  EXPECT_FALSE(good.done.HasBeenNotified());
  Pending second;
  Ask(1, 0, &second);
  ASSERT_TRUE(good.done.WaitForNotificationWithTimeout(kDeadline));
  ASSERT_TRUE(second.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_EQ(good.reply.outcome().code(), v1::Outcome::OK) << good.status.error_message();
}

TEST_F(HostAgentCallTest, ShutdownAnswersAHeldCallUnavailable) {
  Pending held;
  Ask(0, 0, &held);
  ASSERT_TRUE(AwaitStats([](const AgentService::Stats& s) { return s.barrier_calls == 1; }));
  agent_->Shutdown();
  ASSERT_TRUE(held.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_EQ(held.status.error_code(), grpc::StatusCode::UNAVAILABLE) << held.status.error_message();
}

TEST_F(HostAgentCallTest, ShutdownAnswersACallWaitingAtTheCoordinatorUnavailable) {
  Pending waiting;
  Ask(0, 0, &waiting);
  // Past the window, the call waits at the coordinator (on the agent's stream) for rank 1.
  ASSERT_TRUE(
      AwaitStats([](const AgentService::Stats& s) { return s.upstream_barrier_calls == 1; }));
  agent_->Shutdown();
  ASSERT_TRUE(waiting.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_EQ(waiting.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << waiting.status.error_message();
}

TEST_F(HostAgentCallTest, HeartbeatsAreAnsweredLocallyAndGoUpOncePerIntervalForTheHost) {
  // Three beats from each worker, back to back: answered at once by the agent.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 2; ++i) {
      v1::HeartbeatReply reply;
      grpc::Status s = Beat(i, &reply);
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_EQ(reply.outcome().code(), v1::Outcome::OK);
    }
  }
  EXPECT_EQ(agent_->stats().local_heartbeats, 6);
  // One heartbeat interval (1 s, from the Join replies) after the first, one call goes up for both.
  ASSERT_TRUE(AwaitStats([](const AgentService::Stats& s) { return s.upstream_heartbeats >= 1; }));
  EXPECT_EQ(agent_->stats().upstream_heartbeats, 1);
}

TEST_F(HostAgentCallTest, AnEndedGenerationReachesAWorkerThroughItsNextBeat) {
  // Worker 1 fails (it leaves with an error): the coordinator ends generation 1.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
    v1::LeaveRequest leave;
    leave.set_worker_id("w1");
    leave.set_rank(join_[1].rank());
    leave.set_generation(join_[1].generation());
    leave.set_error("simulated failure");
    v1::LeaveReply reply;
    ASSERT_TRUE(stub_->Leave(&ctx, leave, &reply).ok());
  }
  // Worker 0 keeps beating the agent; within about an interval it hears GENERATION_ENDED.
  const absl::Time deadline = absl::Now() + kDeadline;
  v1::HeartbeatReply reply;
  while (absl::Now() < deadline) {
    ASSERT_TRUE(Beat(0, &reply).ok());
    if (reply.outcome().code() != v1::Outcome::OK) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(reply.outcome().code(), v1::Outcome::GENERATION_ENDED) << reply.outcome().message();
}

TEST_F(HostAgentCallTest, ReportsGoUpInOneBatchAndEachHearsItsOwnResult) {
  struct Sent {
    grpc::ClientContext ctx;
    v1::ReportRequest request;
    v1::ReportReply reply;
    grpc::Status status;
    absl::Notification done;
  };
  Sent good, bad;
  good.request.set_worker_id("w0");
  good.request.set_rank(join_[0].rank());
  good.request.set_generation(join_[0].generation());
  bad.request = good.request;
  bad.request.set_worker_id("impostor");
  for (Sent* s : {&good, &bad}) {
    s->ctx.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
    stub_->async()->Report(&s->ctx, &s->request, &s->reply, [s](grpc::Status status) {
      s->status = status;
      s->done.Notify();
    });
  }
  ASSERT_TRUE(good.done.WaitForNotificationWithTimeout(kDeadline));
  ASSERT_TRUE(bad.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_TRUE(good.status.ok()) << good.status.error_message();
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << bad.status.error_message();
  EXPECT_EQ(agent_->stats().local_reports, 2);
  // Both local workers had a report waiting: one batch, without waiting for the window.
  EXPECT_EQ(agent_->stats().upstream_report_batches, 1);
}

TEST_F(HostAgentCallTest, ALoneReportGoesUpWhenTheWindowPasses) {
  v1::ReportRequest request;
  request.set_worker_id("w1");
  request.set_rank(join_[1].rank());
  request.set_generation(join_[1].generation());
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
  v1::ReportReply reply;
  const absl::Time start = absl::Now();
  grpc::Status s = stub_->Report(&ctx, request, &reply);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150));  // held for the 200 ms window
  EXPECT_EQ(agent_->stats().upstream_report_batches, 1);
}

// The coordinator's end of the stream, driven by the agent's client end directly.
class BarrierStreamTest : public ::testing::Test {
 protected:
  virtual int Workers() const { return 2; }

  void SetUp() override {
    coordinator_ = StartCoordinator(Workers());
    ASSERT_NE(coordinator_, nullptr);
    stub_ = v1::Coordinator::NewStub(
        grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials()));
    for (int i = 0; i < Workers(); ++i) {
      v1::JoinRequest join;
      join.set_worker_id(absl::StrCat("w", i));
      ASSERT_TRUE(coordinator_->controller().JoinNow(join, absl::Now()).ok());
    }
  }

  struct Answer {
    grpc::Status status;
    v1::NextRoundsReply reply;
    absl::Notification done;
  };
  BarrierStream::Done Into(Answer* a) {
    return [a](const grpc::Status& s, const v1::NextRoundsReply& r) {
      a->status = s;
      a->reply = r;
      a->done.Notify();
    };
  }
  static v1::NextRoundsRequest Ask(int rank) {
    v1::NextRoundsRequest r;
    r.set_worker_id(absl::StrCat("w", rank));
    r.set_rank(rank);
    r.set_generation(1);
    r.set_next_round(0);
    return r;
  }

  std::unique_ptr<CoordinatorServer> coordinator_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

TEST_F(BarrierStreamTest, ErrorsTravelPerCallAndTheStreamGoesOn) {
  BarrierStream stream(stub_.get(), "");
  Answer bad, group;
  v1::NextRoundsRequest wrong = Ask(1);
  wrong.set_worker_id("impostor");
  stream.Call(wrong, absl::Now() + kDeadline, Into(&bad));
  ASSERT_TRUE(bad.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << bad.status.error_message();
  // Both ranks in one call, on the same stream: the barrier completes.
  v1::NextRoundsRequest both = Ask(0);
  v1::CoMember* m = both.add_co_members();
  m->set_worker_id("w1");
  m->set_rank(1);
  stream.Call(both, absl::Now() + kDeadline, Into(&group));
  ASSERT_TRUE(group.done.WaitForNotificationWithTimeout(kDeadline));
  ASSERT_TRUE(group.status.ok()) << group.status.error_message();
  EXPECT_EQ(group.reply.outcome().code(), v1::Outcome::OK);
  EXPECT_GT(group.reply.rounds_size(), 0);
  EXPECT_EQ(stream.streams_opened(), 1);
}

class BarrierStreamThreeTest : public BarrierStreamTest {
 protected:
  int Workers() const override { return 3; }
};

TEST_F(BarrierStreamThreeTest, AnswersArriveOutOfOrderAndAPastDeadlineExpires) {
  BarrierStream stream(stub_.get(), "");
  Answer first, second, late;
  // Rank 0 waits at the coordinator for ranks 1 and 2. Rank 2's call, with a deadline already
  // past, waits there too, so only the stream's own expiry can end it.
  stream.Call(Ask(0), absl::Now() + kDeadline, Into(&first));
  stream.Call(Ask(2), absl::Now() - absl::Seconds(1), Into(&late));
  stream.Expire(absl::Now());
  ASSERT_TRUE(late.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << late.status.error_message();
  EXPECT_FALSE(first.done.HasBeenNotified());
  // Rank 1 completes the barrier: the coordinator answers all three; the expired call's answer
  // finds no one waiting and is dropped, and the other two get theirs.
  stream.Call(Ask(1), absl::Now() + kDeadline, Into(&second));
  ASSERT_TRUE(first.done.WaitForNotificationWithTimeout(kDeadline));
  ASSERT_TRUE(second.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(first.reply.outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(first.reply.SerializeAsString(), second.reply.SerializeAsString());
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(BarrierStreamTest, AStreamThatEndsAnswersItsCallsUnavailableAndTheNextCallReopens) {
  BarrierStream stream(stub_.get(), "");
  Answer waiting;
  stream.Call(Ask(0), absl::Now() + kDeadline, Into(&waiting));
  // The coordinator goes away while rank 0 waits on the stream.
  coordinator_->Shutdown();
  ASSERT_TRUE(waiting.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_EQ(waiting.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << waiting.status.error_message();
  Answer again;
  stream.Call(Ask(1), absl::Now() + absl::Seconds(5), Into(&again));
  ASSERT_TRUE(again.done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_FALSE(again.status.ok());
  EXPECT_EQ(stream.streams_opened(), 2);
}

TEST(BarrierStreamTokenTest, AStreamWithoutTheTokenIsRefused) {
  CoordinatorServer::Options options;
  options.security.token = "s3cret";
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> coordinator =
      CoordinatorServer::Start(testing::SmallQsrRecipe(1), options);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  auto stub = v1::Coordinator::NewStub(
      grpc::CreateChannel((*coordinator)->address(), grpc::InsecureChannelCredentials()));
  BarrierStream stream(stub.get(), "wrong");
  absl::Notification done;
  grpc::Status status;
  v1::NextRoundsRequest r;
  r.set_worker_id("w0");
  r.set_generation(1);
  stream.Call(r, absl::Now() + kDeadline, [&](const grpc::Status& s, const v1::NextRoundsReply&) {
    status = s;
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.error_message().find("token"), std::string::npos) << status.error_message();
}

TEST(HostAgentStartTest, RefusesANonLocalListenAddressAndABadWindow) {
  HostAgent::Options options;
  options.coordinator = "127.0.0.1:1";
  options.listen = "0.0.0.0:0";
  absl::StatusOr<std::unique_ptr<HostAgent>> agent = HostAgent::Start(options);
  ASSERT_FALSE(agent.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(agent.status()));
  EXPECT_NE(agent.status().message().find("allowed"), std::string::npos) << agent.status();
  options.listen = "127.0.0.1:0";
  options.window = absl::ZeroDuration();
  agent = HostAgent::Start(options);
  ASSERT_FALSE(agent.ok());
  EXPECT_NE(agent.status().message().find("allowed"), std::string::npos) << agent.status();
  options.window = absl::Milliseconds(10);
  options.coordinator = "";
  EXPECT_FALSE(HostAgent::Start(options).ok());
}

}  // namespace
}  // namespace qsr
