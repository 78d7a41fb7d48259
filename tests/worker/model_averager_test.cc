#include "worker/comm/model_averager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "rendezvous/store.h"
#include "tests/worker/gloo_ranks.h"
#include "worker/comm/gloo_communicator.h"

namespace qsr {
namespace {

// A small model with parameters, float buffers and a non-floating buffer.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)));
    bn = register_module("bn", torch::nn::BatchNorm2d(4));
    fc = register_module("fc", torch::nn::Linear(4, 5));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn(conv(x)));
    return fc(x.mean({2, 3}));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Net);

// Every floating tensor of the model, in averager order.
std::vector<torch::Tensor> FloatState(const Net& net) {
  std::vector<torch::Tensor> out;
  for (const auto& p : net->parameters()) out.push_back(p.detach().clone());
  for (const auto& b : net->buffers()) {
    if (b.is_floating_point()) out.push_back(b.detach().clone());
  }
  return out;
}

class ModelAveragerTest : public ::testing::TestWithParam<int> {
 protected:
  int size() const { return GetParam(); }
};

TEST_P(ModelAveragerTest, AverageGivesBitIdenticalMeanOnEveryRank) {
  auto comms = Connect(size());
  std::vector<Net> nets;
  for (int r = 0; r < size(); ++r) {
    torch::manual_seed(r + 1);  // Different weights on every rank.
    nets.emplace_back();
    // Make the BatchNorm statistics differ too.
    nets[r]->train();
    nets[r]->forward(torch::randn({2, 3, 6, 6}) * (r + 1));
  }
  std::vector<std::vector<torch::Tensor>> before(size());
  for (int r = 0; r < size(); ++r) before[r] = FloatState(nets[r]);
  const auto tracked_before = nets[0]->named_buffers()["bn.num_batches_tracked"].clone();

  std::vector<absl::Status> statuses(size());
  RunRanks(size(), [&](int r) {
    auto averager = ModelAverager::ForModule(*nets[r]);
    if (!averager.ok()) {
      statuses[r] = averager.status();
      return;
    }
    statuses[r] = averager->Average(*comms[r]);
  });
  for (int r = 0; r < size(); ++r) ASSERT_TRUE(statuses[r].ok()) << statuses[r];

  const size_t num = before[0].size();
  for (size_t i = 0; i < num; ++i) {
    torch::Tensor mean = torch::zeros_like(before[0][i], torch::kFloat64);
    for (int r = 0; r < size(); ++r) mean += before[r][i].to(torch::kFloat64);
    mean /= size();
    for (int r = 0; r < size(); ++r) {
      const torch::Tensor now = FloatState(nets[r])[i];
      EXPECT_TRUE(BitIdentical(now, FloatState(nets[0])[i])) << "tensor " << i << " rank " << r;
      EXPECT_TRUE(torch::allclose(now.to(torch::kFloat64), mean, 1e-5, 1e-6)) << "tensor " << i;
    }
  }
  // Non-floating buffers are left alone.
  EXPECT_TRUE(torch::equal(nets[0]->named_buffers()["bn.num_batches_tracked"], tracked_before));
}

TEST_P(ModelAveragerTest, BytesCountFloatingElements) {
  Net net;
  auto averager = ModelAverager::ForModule(*net);
  ASSERT_TRUE(averager.ok()) << averager.status();
  int64_t numel = 0;
  for (const auto& t : FloatState(net)) numel += t.numel();
  EXPECT_EQ(averager->bytes(), numel * 4);
  EXPECT_EQ(averager->num_grad_tensors(), static_cast<int64_t>(net->parameters().size()));
  // conv w/b, bn w/b, fc w/b, bn running_mean/var; num_batches_tracked skipped.
  EXPECT_EQ(averager->num_tensors(), 8);
}

TEST_P(ModelAveragerTest, BroadcastFromNonZeroRootCopiesTheModel) {
  auto comms = Connect(size());
  std::vector<Net> nets;
  for (int r = 0; r < size(); ++r) {
    torch::manual_seed(100 + r);
    nets.emplace_back();
  }
  const int root = size() - 1;
  const auto expected = FloatState(nets[root]);
  std::vector<absl::Status> statuses(size());
  RunRanks(size(), [&](int r) {
    auto averager = ModelAverager::ForModule(*nets[r]);
    statuses[r] = averager.ok() ? averager->BroadcastFrom(*comms[r], root) : averager.status();
  });
  for (int r = 0; r < size(); ++r) {
    ASSERT_TRUE(statuses[r].ok()) << statuses[r];
    const auto state = FloatState(nets[r]);
    for (size_t i = 0; i < state.size(); ++i) {
      EXPECT_TRUE(BitIdentical(state[i], expected[i])) << "rank " << r << " tensor " << i;
    }
  }
}

TEST_P(ModelAveragerTest, AllReduceGradientsAveragesAndHandlesMissingGrads) {
  auto comms = Connect(size());
  // Three parameters: `a` has a grad everywhere, `b` only on rank 0, `c` nowhere.
  std::vector<std::vector<torch::Tensor>> params(size());
  for (int r = 0; r < size(); ++r) {
    torch::Tensor a = torch::zeros({2, 3}, torch::requires_grad());
    torch::Tensor b = torch::zeros({4}, torch::requires_grad());
    torch::Tensor c = torch::zeros({5}, torch::requires_grad());
    a.mutable_grad() = torch::full({2, 3}, static_cast<float>(r + 1));
    if (r == 0) b.mutable_grad() = torch::full({4}, 6.0f);
    params[r] = {a, b, c};
  }
  std::vector<absl::Status> statuses(size());
  RunRanks(size(), [&](int r) {
    auto averager = ModelAverager::Create(params[r]);
    statuses[r] = averager.ok() ? averager->AllReduceGradients(*comms[r]) : averager.status();
  });
  const float mean_a = (size() + 1) / 2.0f;
  const float mean_b = 6.0f / size();
  for (int r = 0; r < size(); ++r) {
    ASSERT_TRUE(statuses[r].ok()) << statuses[r];
    EXPECT_TRUE(torch::allclose(params[r][0].grad(), torch::full({2, 3}, mean_a)));
    ASSERT_TRUE(params[r][1].grad().defined()) << "rank " << r;
    EXPECT_TRUE(torch::allclose(params[r][1].grad(), torch::full({4}, mean_b)));
    EXPECT_TRUE(BitIdentical(params[r][1].grad(), params[0][1].grad()));
    EXPECT_FALSE(params[r][2].grad().defined()) << "rank " << r;
    // The parameters themselves are untouched.
    EXPECT_TRUE(torch::equal(params[r][0], torch::zeros({2, 3})));
  }
}

// The averager's buffer is the model's own memory: optimizer steps taken after it was built (on
// tensors of every layout it handles) are what gets averaged, and training goes on afterwards.
TEST_P(ModelAveragerTest, StepsAfterCreationAreAveragedAndTrainingGoesOn) {
  auto comms = Connect(size());
  struct Rank {
    torch::Tensor dense, channels_last, transposed, wide;  // wide: float64, copied
    std::unique_ptr<torch::optim::SGD> sgd;
  };
  std::vector<Rank> ranks(size());
  for (int r = 0; r < size(); ++r) {
    torch::manual_seed(10 + r);
    Rank& k = ranks[r];
    k.dense = torch::randn({4, 3}).requires_grad_(true);
    k.channels_last = torch::randn({2, 3, 4, 5})
                          .contiguous(torch::MemoryFormat::ChannelsLast)
                          .requires_grad_(true);
    k.transposed = torch::randn({3, 6}).t().requires_grad_(true);  // dense, not contiguous
    k.wide = torch::randn({5}, torch::kFloat64).requires_grad_(true);
  }
  std::vector<std::vector<torch::Tensor>> expected(size());
  std::vector<absl::Status> statuses(size());
  RunRanks(size(), [&](int r) {
    Rank& k = ranks[r];
    std::vector<torch::Tensor> params = {k.dense, k.channels_last, k.transposed, k.wide};
    auto averager = ModelAverager::Create(params);
    if (!averager.ok()) {
      statuses[r] = averager.status();
      return;
    }
    EXPECT_EQ(averager->num_bound_tensors(), 3);  // all but the float64 one
    EXPECT_TRUE(k.channels_last.is_contiguous(torch::MemoryFormat::ChannelsLast));
    k.sgd = std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.1));
    for (int step = 0; step < 3; ++step) {
      k.sgd->zero_grad();
      torch::Tensor loss = k.dense.pow(2).sum() * (r + 1) + k.channels_last.sin().sum() +
                           k.transposed.matmul(torch::ones({3, 2})).sum() +
                           k.wide.pow(3).sum().to(torch::kFloat32);
      loss.backward();
      k.sgd->step();
    }
    for (const torch::Tensor& p : params) expected[r].push_back(p.detach().clone());
    statuses[r] = averager->Average(*comms[r]);
    if (!statuses[r].ok()) return;
    // Training on after the round still reaches the averaged tensors through autograd.
    k.sgd->zero_grad();
    (k.dense.sum() + k.channels_last.sum() + k.transposed.sum()).backward();
    EXPECT_TRUE(k.dense.grad().defined() && k.channels_last.grad().defined());
  });
  for (int r = 0; r < size(); ++r) ASSERT_TRUE(statuses[r].ok()) << statuses[r];
  const std::vector<torch::Tensor> now0 = {ranks[0].dense, ranks[0].channels_last,
                                           ranks[0].transposed, ranks[0].wide};
  for (size_t i = 0; i < now0.size(); ++i) {
    torch::Tensor mean = torch::zeros_like(expected[0][i], torch::kFloat64);
    for (int r = 0; r < size(); ++r) mean += expected[r][i].to(torch::kFloat64);
    mean /= size();
    EXPECT_TRUE(torch::allclose(now0[i].detach().to(torch::kFloat64), mean, 1e-5, 1e-6))
        << "tensor " << i;
  }
  for (int r = 1; r < size(); ++r) {
    EXPECT_TRUE(torch::equal(ranks[r].dense.detach(), ranks[0].dense.detach()));
    EXPECT_TRUE(torch::equal(ranks[r].channels_last.detach(), ranks[0].channels_last.detach()));
  }
}

// Per rank: a model whose tensors all start equal (a shared seed), with a float64 tensor that is
// copied around the flat buffer rather than bound to it.
struct Bf16Rank {
  std::vector<torch::Tensor> tensors;
  std::unique_ptr<ModelAverager> averager;
};

// Every rank's tensors bit-identical to rank 0's, and within `tolerance` of the float64 `mean`.
void ExpectIdenticalAndNear(const std::vector<Bf16Rank>& ranks,
                            const std::vector<torch::Tensor>& mean, double tolerance) {
  for (size_t r = 0; r < ranks.size(); ++r) {
    for (size_t i = 0; i < mean.size(); ++i) {
      EXPECT_TRUE(BitIdentical(ranks[r].tensors[i], ranks[0].tensors[i]))
          << "rank " << r << " tensor " << i;
      const double error =
          (ranks[r].tensors[i].to(torch::kFloat64) - mean[i]).abs().max().item<double>();
      EXPECT_LE(error, tolerance) << "rank " << r << " tensor " << i;
    }
  }
}

// Adds a different small change to every rank's tensors; returns the float64 mean of the new
// states and the largest change.
std::pair<std::vector<torch::Tensor>, double> Drift(std::vector<Bf16Rank>& ranks, int seed) {
  double largest = 0;
  std::vector<torch::Tensor> mean;
  for (size_t r = 0; r < ranks.size(); ++r) {
    torch::manual_seed(seed * 100 + static_cast<int>(r));
    for (size_t i = 0; i < ranks[r].tensors.size(); ++i) {
      torch::Tensor& t = ranks[r].tensors[i];
      const torch::Tensor change = torch::randn(t.sizes(), t.options()) * 0.01;
      largest = std::max(largest, change.abs().max().item<double>());
      t.add_(change);
      if (r == 0) mean.push_back(torch::zeros_like(t, torch::kFloat64));
      mean[i] += t.to(torch::kFloat64) / static_cast<double>(ranks.size());
    }
  }
  return {mean, largest};
}

TEST_P(ModelAveragerTest, Bf16SyncSendsHalfTheBytesAndKeepsRanksIdentical) {
  auto comms = Connect(size());
  std::vector<Bf16Rank> ranks(size());
  for (int r = 0; r < size(); ++r) {
    torch::manual_seed(7);
    ranks[r].tensors = {torch::randn({300, 7}), torch::randn({1001}),
                        torch::randn({5, 5}, torch::kFloat64)};
    auto averager = ModelAverager::Create(ranks[r].tensors);
    ASSERT_TRUE(averager.ok()) << averager.status();
    ranks[r].averager = std::make_unique<ModelAverager>(std::move(*averager));
    ranks[r].averager->set_sync_precision(ModelAverager::SyncPrecision::kBfloat16);
  }
  const int64_t numel = 300 * 7 + 1001 + 25;
  std::vector<absl::Status> statuses(size());
  auto average_all = [&](std::vector<std::unique_ptr<GlooCommunicator>>& with) {
    std::vector<int64_t> sent(size());
    RunRanks(size(), [&](int r) {
      const int64_t before = with[r]->bytes_sent();
      statuses[r] = ranks[r].averager->Average(*with[r]);
      sent[r] = with[r]->bytes_sent() - before;
    });
    for (int r = 0; r < size(); ++r) EXPECT_TRUE(statuses[r].ok()) << statuses[r];
    return sent;
  };
  auto expect_identical_and_near = [&](const std::vector<torch::Tensor>& mean, double tolerance) {
    ExpectIdenticalAndNear(ranks, mean, tolerance);
  };

  // No reference yet: the first sync sends float32 and is the exact mean.
  auto [mean0, change0] = Drift(ranks, 1);
  std::vector<int64_t> sent = average_all(comms);
  for (int r = 0; r < size(); ++r) {
    EXPECT_EQ(sent[r], GlooCommunicator::RingAllReduceBytesSent(numel * 4, r, size(), 4));
  }
  expect_identical_and_near(mean0, 1e-6);

  // Then each sync sends the bfloat16 changes: half the bytes, the mean up to the rounding of the
  // changes (2^-9 relative per rounding: once on each rank, then at each hop of the ring).
  for (int round = 2; round <= 4; ++round) {
    auto [mean, largest] = Drift(ranks, round);
    sent = average_all(comms);
    for (int r = 0; r < size(); ++r) {
      EXPECT_EQ(sent[r], GlooCommunicator::RingAllReduceBytesSent(numel * 2, r, size(), 2))
          << "round " << round;
    }
    expect_identical_and_near(mean, size() == 1 ? 1e-7 : largest * size() * 4.0 / 256 + 1e-6);
  }

  // A new communicator (a new group) has no reference: float32 again, exact again.
  auto fresh = Connect(size());
  auto [mean5, change5] = Drift(ranks, 5);
  sent = average_all(fresh);
  for (int r = 0; r < size(); ++r) {
    EXPECT_EQ(sent[r], GlooCommunicator::RingAllReduceBytesSent(numel * 4, r, size(), 4));
  }
  expect_identical_and_near(mean5, 1e-6);
}

// Overlapped averaging in both sync precisions: a rank's steps between StartAverage() and
// FinishAverage() stay on top of the mean of the states at the start; a start and finish with no
// step between settle every rank on the mean, bit for bit.
class OverlappedAverageTest
    : public ::testing::TestWithParam<std::tuple<int, ModelAverager::SyncPrecision>> {
 protected:
  int size() const { return std::get<0>(GetParam()); }
  ModelAverager::SyncPrecision precision() const { return std::get<1>(GetParam()); }
};

TEST_P(OverlappedAverageTest, KeepsEachRanksProgressOnTheMeanAndSettlesIdentical) {
  auto comms = Connect(size());
  const bool bf16 = precision() == ModelAverager::SyncPrecision::kBfloat16;
  std::vector<Bf16Rank> ranks(size());
  for (int r = 0; r < size(); ++r) {
    torch::manual_seed(7);  // one starting model, as after the group's broadcast
    ranks[r].tensors = {torch::randn({300, 7}), torch::randn({1001}),
                        torch::randn({5, 5}, torch::kFloat64)};  // float64: copied, not bound
    auto averager = ModelAverager::Create(ranks[r].tensors);
    ASSERT_TRUE(averager.ok()) << averager.status();
    ranks[r].averager = std::make_unique<ModelAverager>(std::move(*averager));
    ranks[r].averager->set_sync_precision(precision());
  }
  const int64_t numel = 300 * 7 + 1001 + 25;
  std::vector<absl::Status> statuses(size());
  auto for_all = [&](const std::function<absl::Status(int)>& fn) {
    RunRanks(size(), [&](int r) { statuses[r] = fn(r); });
    for (int r = 0; r < size(); ++r)
      ASSERT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
  };
  // The group's starting broadcast gives bf16 its reference.
  for_all([&](int r) { return ranks[r].averager->BroadcastFrom(*comms[r], 0); });

  for (int round = 1; round <= 3; ++round) {
    auto [mean, largest] = Drift(ranks, round);
    std::vector<int64_t> before(size());
    for_all([&](int r) {
      before[r] = comms[r]->bytes_sent();
      return ranks[r].averager->StartAverage(*comms[r]);
    });
    for (int r = 0; r < size(); ++r) EXPECT_TRUE(ranks[r].averager->average_pending());
    // A second start, or a synchronous average, while one is in flight is refused.
    EXPECT_EQ(ranks[0].averager->StartAverage(*comms[0]).code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(ranks[0].averager->Average(*comms[0]).code(), absl::StatusCode::kFailedPrecondition);
    // Training goes on meanwhile: each rank moves by its own step.
    std::vector<std::vector<torch::Tensor>> steps(size());
    for (int r = 0; r < size(); ++r) {
      for (torch::Tensor& t : ranks[r].tensors) {
        steps[r].push_back(torch::full_like(t, 0.001 * (r + 1) * round));
        t.add_(steps[r].back());
      }
    }
    for_all([&](int r) { return ranks[r].averager->FinishAverage(); });
    const int64_t element = bf16 && size() > 1 ? 2 : 4;
    for (int r = 0; r < size(); ++r) {
      EXPECT_FALSE(ranks[r].averager->average_pending());
      EXPECT_EQ(comms[r]->bytes_sent() - before[r],
                GlooCommunicator::RingAllReduceBytesSent(numel * element, r, size(), element))
          << "round " << round;
      for (size_t i = 0; i < mean.size(); ++i) {
        const torch::Tensor want = mean[i] + steps[r][i].to(torch::kFloat64);
        const double error =
            (ranks[r].tensors[i].to(torch::kFloat64) - want).abs().max().item<double>();
        const double tolerance = bf16 && size() > 1 ? largest * size() * 4.0 / 256 + 1e-5 : 1e-5;
        EXPECT_LE(error, tolerance) << "round " << round << " rank " << r << " tensor " << i;
      }
    }
  }

  // Settling: a start and a finish with no step between leave every rank on the same mean.
  std::vector<torch::Tensor> mean(ranks[0].tensors.size());
  for (size_t i = 0; i < mean.size(); ++i) {
    mean[i] = torch::zeros_like(ranks[0].tensors[i], torch::kFloat64);
    for (int r = 0; r < size(); ++r) mean[i] += ranks[r].tensors[i].to(torch::kFloat64) / size();
  }
  for_all([&](int r) { return ranks[r].averager->StartAverage(*comms[r]); });
  for_all([&](int r) { return ranks[r].averager->FinishAverage(); });
  ExpectIdenticalAndNear(ranks, mean, bf16 && size() > 1 ? 0.01 * size() * 4.0 / 256 + 1e-5 : 1e-5);
  // A synchronous average works again once nothing is pending.
  for_all([&](int r) { return ranks[r].averager->Average(*comms[r]); });
}

INSTANTIATE_TEST_SUITE_P(
    WorldSizesAndPrecisions, OverlappedAverageTest,
    ::testing::Combine(::testing::Values(1, 2, 3),
                       ::testing::Values(ModelAverager::SyncPrecision::kFloat32,
                                         ModelAverager::SyncPrecision::kBfloat16)),
    [](const ::testing::TestParamInfo<std::tuple<int, ModelAverager::SyncPrecision>>& info) {
      return "size" + std::to_string(std::get<0>(info.param)) +
             (std::get<1>(info.param) == ModelAverager::SyncPrecision::kBfloat16 ? "_bf16"
                                                                                 : "_fp32");
    });

// A peer that never joins the collective: after the communicator is aborted, finishing returns
// the error and abandoning returns at once, and the tensors keep this rank's own values.
TEST(OverlappedAverageFailureTest, AFailedOrAbandonedSyncLeavesTheTensorsAlone) {
  for (bool abandon : {false, true}) {
    auto comms = Connect(2);
    torch::manual_seed(3);
    std::vector<torch::Tensor> tensors = {torch::randn({64}), torch::randn({4, 4})};
    auto averager = ModelAverager::Create(tensors);
    ASSERT_TRUE(averager.ok()) << averager.status();
    ASSERT_TRUE(averager->StartAverage(*comms[0]).ok());
    tensors[0].add_(1.0);  // a step taken meanwhile
    const std::vector<torch::Tensor> mine = {tensors[0].clone(), tensors[1].clone()};
    comms[0]->Abort("the peer is gone");
    const absl::Time start = absl::Now();
    if (abandon) {
      averager->AbandonAverage();
    } else {
      const absl::Status status = averager->FinishAverage();
      EXPECT_FALSE(status.ok());
    }
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
    EXPECT_FALSE(averager->average_pending());
    EXPECT_TRUE(torch::equal(tensors[0], mine[0]));
    EXPECT_TRUE(torch::equal(tensors[1], mine[1]));
  }
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, ModelAveragerTest, ::testing::Values(1, 2, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "size" + std::to_string(info.param);
                         });

TEST(ModelAveragerCreateTest, SkipsNonFloatingAndUndefinedTensors) {
  std::vector<torch::Tensor> tensors = {torch::ones({3}), torch::zeros({2}, torch::kInt64),
                                        torch::Tensor(), torch::ones({2, 2}, torch::kFloat64)};
  auto averager = ModelAverager::Create(tensors);
  ASSERT_TRUE(averager.ok()) << averager.status();
  EXPECT_EQ(averager->num_tensors(), 2);
  EXPECT_EQ(averager->bytes(), (3 + 4) * 4);
  EXPECT_EQ(averager->num_grad_tensors(), 0);
  EXPECT_EQ(averager->num_bound_tensors(), 1);
  // The float32 tensor now lives in the averager's buffer and kept its value.
  EXPECT_TRUE(torch::equal(tensors[0], torch::ones({3})));
}

}  // namespace
}  // namespace qsr
