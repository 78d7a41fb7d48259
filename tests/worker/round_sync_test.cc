// RoundSync over two in-process Gloo ranks: a generation starts from rank 0's model, a local
// round ends averaged, a data-parallel step averages gradients, sync_overlap's average lands at
// its fixed step (and is counted in the round that finished it), and Abandon() after an abort.
#include "worker/round_sync.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "rendezvous/store.h"
#include "tests/worker/gloo_ranks.h"
#include "worker/comm/gloo_communicator.h"

namespace qsr {
namespace {

// One rank's model (different initial weights per rank) and SGD without momentum.
struct Member {
  explicit Member(int rank) {
    static absl::Mutex seed_mu;  // the ranks' threads share LibTorch's default generator
    absl::MutexLock lock(&seed_mu);
    torch::manual_seed(100 + rank);
    model = torch::nn::Linear(4, 3);
    sgd = std::make_unique<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.1));
  }
  torch::Tensor Flat() const {
    std::vector<torch::Tensor> parts;
    for (const torch::Tensor& p : model->parameters()) parts.push_back(p.detach().flatten());
    return torch::cat(parts);
  }
  // Sets every parameter to `value`, as if this rank had trained to there.
  void Set(float value) {
    torch::NoGradGuard no_grad;
    for (torch::Tensor& p : model->parameters()) p.fill_(value);
  }
  torch::nn::Linear model{nullptr};
  std::unique_ptr<torch::optim::SGD> sgd;
};

v1::RoundPlan Plan(int64_t round, int64_t start, int64_t h, bool data_parallel = false) {
  v1::RoundPlan plan;
  plan.set_round(round);
  plan.set_start_step(start);
  plan.set_h(h);
  plan.set_data_parallel(data_parallel);
  return plan;
}

TEST(RoundSyncTest, StartsFromRankZerosModelAndEndsALocalRoundAveraged) {
  Comms comms = Connect(2);
  std::vector<torch::Tensor> start(2), end(2);
  std::vector<RoundSyncResult> results(2);
  torch::Tensor rank0_initial = Member(0).Flat();
  RunRanks(2, [&](int rank) {
    Member m(rank);
    absl::StatusOr<std::unique_ptr<RoundSync>> sync = RoundSync::Create(*m.model, *m.sgd, {});
    ASSERT_TRUE(sync.ok()) << sync.status();
    ASSERT_TRUE((*sync)->BeginGeneration(comms[rank].get(), false, false).ok());
    start[rank] = m.Flat().clone();
    const v1::RoundPlan plan = Plan(0, 0, 2);
    for (int64_t t = 0; t < 2; ++t) ASSERT_TRUE((*sync)->BeginStep(plan, t).ok());
    m.Set(rank == 0 ? 1.0f : 3.0f);
    absl::StatusOr<RoundSyncResult> r = (*sync)->EndRound(plan);
    ASSERT_TRUE(r.ok()) << r.status();
    results[rank] = *r;
    end[rank] = m.Flat().clone();
  });
  EXPECT_TRUE(torch::equal(start[0], rank0_initial));
  EXPECT_TRUE(torch::equal(start[1], rank0_initial));
  EXPECT_TRUE(torch::allclose(end[0], torch::full_like(end[0], 2.0f)));
  EXPECT_TRUE(torch::equal(end[0], end[1]));
  for (const RoundSyncResult& r : results) {
    EXPECT_TRUE(r.synced);
    EXPECT_GT(r.bytes_sent, 0);  // the round's all-reduce, not the generation's broadcast
  }
}

TEST(RoundSyncTest, DataParallelStepsAverageGradientsAndLeaveTheModelAlone) {
  Comms comms = Connect(2);
  std::vector<torch::Tensor> grads(2);
  std::vector<RoundSyncResult> results(2);
  RunRanks(2, [&](int rank) {
    Member m(rank);
    RoundSyncOptions options;
    options.bucket_bytes = 64;  // buckets that overlap with backward
    absl::StatusOr<std::unique_ptr<RoundSync>> sync = RoundSync::Create(*m.model, *m.sgd, options);
    ASSERT_TRUE(sync.ok()) << sync.status();
    ASSERT_TRUE((*sync)->BeginGeneration(comms[rank].get(), false, true).ok());
    const v1::RoundPlan plan = Plan(0, 0, 1, /*data_parallel=*/true);
    ASSERT_TRUE((*sync)->BeginStep(plan, 0).ok());
    m.sgd->zero_grad();
    (*sync)->ArmGradients(plan);
    m.model->forward(torch::full({1, 4}, static_cast<float>(rank + 1))).sum().backward();
    ASSERT_TRUE((*sync)->SyncGradients(plan).ok());
    grads[rank] = m.model->weight.grad().clone();
    absl::StatusOr<RoundSyncResult> r = (*sync)->EndRound(plan);
    ASSERT_TRUE(r.ok()) << r.status();
    results[rank] = *r;
  });
  // d(sum(W x + b))/dW = x per output row: the mean over ranks of x = 1 and x = 2.
  EXPECT_TRUE(torch::allclose(grads[0], torch::full({3, 4}, 1.5f)));
  EXPECT_TRUE(torch::equal(grads[0], grads[1]));
  EXPECT_FALSE(results[0].synced);  // parameters stay identical; nothing else to average
  EXPECT_GT(results[0].bytes_sent, 0);
}

TEST(RoundSyncTest, AnOverlappedAverageLandsAtItsStepAndCountsWhereItFinished) {
  Comms comms = Connect(2);
  std::vector<RoundSyncResult> first(2), second(2);
  std::vector<torch::Tensor> before_apply(2), after_apply(2);
  RunRanks(2, [&](int rank) {
    Member m(rank);
    RoundSyncOptions options;
    options.sync_overlap = 0.5;  // applied before step start + ceil(0.5 * H)
    absl::StatusOr<std::unique_ptr<RoundSync>> sync = RoundSync::Create(*m.model, *m.sgd, options);
    ASSERT_TRUE(sync.ok()) << sync.status();
    ASSERT_TRUE((*sync)->BeginGeneration(comms[rank].get(), false, false).ok());
    const v1::RoundPlan round0 = Plan(0, 0, 2), round1 = Plan(1, 2, 4);
    for (int64_t t = 0; t < 2; ++t) ASSERT_TRUE((*sync)->BeginStep(round0, t).ok());
    m.Set(rank == 0 ? 1.0f : 3.0f);
    absl::StatusOr<RoundSyncResult> r = (*sync)->EndRound(round0);  // starts the average
    ASSERT_TRUE(r.ok()) << r.status();
    first[rank] = *r;
    for (int64_t t = 2; t < 6; ++t) {
      if (t == 4) before_apply[rank] = m.Flat().clone();
      ASSERT_TRUE((*sync)->BeginStep(round1, t).ok());
      if (t == 4) after_apply[rank] = m.Flat().clone();
    }
    r = (*sync)->EndRound(round1);
    ASSERT_TRUE(r.ok()) << r.status();
    second[rank] = *r;
    ASSERT_TRUE((*sync)->Finish().ok());  // the second round's average, still in flight
  });
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_FALSE(first[rank].synced);
    EXPECT_EQ(first[rank].bytes_sent, 0);  // nothing had finished yet
    EXPECT_TRUE(torch::allclose(before_apply[rank],
                                torch::full_like(before_apply[rank], rank == 0 ? 1.0f : 3.0f)));
    // Nothing trained in between: the model becomes exactly the mean at step 4.
    EXPECT_TRUE(torch::allclose(after_apply[rank], torch::full_like(after_apply[rank], 2.0f)));
    EXPECT_GT(second[rank].bytes_sent, 0);  // round 0's average, finished in round 1
  }
  EXPECT_EQ(second[0].bytes_sent, second[1].bytes_sent);
}

TEST(RoundSyncTest, AbandonForgetsTheAverageInFlightAfterAnAbort) {
  Comms comms = Connect(2);
  RunRanks(2, [&](int rank) {
    Member m(rank);
    RoundSyncOptions options;
    options.sync_overlap = 1.0;
    absl::StatusOr<std::unique_ptr<RoundSync>> sync = RoundSync::Create(*m.model, *m.sgd, options);
    ASSERT_TRUE(sync.ok()) << sync.status();
    ASSERT_TRUE((*sync)->BeginGeneration(comms[rank].get(), false, false).ok());
    const v1::RoundPlan plan = Plan(0, 0, 1);
    ASSERT_TRUE((*sync)->BeginStep(plan, 0).ok());
    ASSERT_TRUE((*sync)->EndRound(plan).ok());
    const int64_t bytes = (*sync)->bytes_sent();
    comms[rank]->Abort("test");
    (*sync)->Abandon();
    EXPECT_TRUE((*sync)->Finish().ok());      // nothing left in flight
    EXPECT_GE((*sync)->bytes_sent(), bytes);  // counted after the communicator's end too
  });
}

}  // namespace
}  // namespace qsr
