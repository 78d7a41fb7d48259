#include "worker/comm/gradient_bucketer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "rendezvous/store.h"
#include "tests/worker/gloo_ranks.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/model_averager.h"

namespace qsr {
namespace {

// A model with a parameter that only rank 0 uses (`partly`), one nobody uses (`never`) and one
// that is frozen (`frozen`).
struct NetImpl : torch::nn::Module {
  NetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3)));
    bn = register_module("bn", torch::nn::BatchNorm2d(8));
    fc1 = register_module("fc1", torch::nn::Linear(8, 16));
    partly = register_module("partly", torch::nn::Linear(16, 16));
    never = register_module("never", torch::nn::Linear(4, 4));
    frozen = register_parameter("frozen", torch::ones({3}), /*requires_grad=*/false);
    fc2 = register_module("fc2", torch::nn::Linear(16, 5));
  }
  torch::Tensor forward(torch::Tensor x, bool use_partly) {
    x = torch::relu(bn(conv(x))).mean({2, 3});
    x = torch::relu(fc1(x));
    if (use_partly) x = x + partly(x);
    return fc2(x);
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc1{nullptr}, partly{nullptr}, never{nullptr}, fc2{nullptr};
  torch::Tensor frozen;
};
TORCH_MODULE(Net);

// A rank's micro-batches for a step: made up front on one thread, because the seed is global and
// the ranks' threads would race for it.
struct MicroBatch {
  torch::Tensor x, y;
};
std::vector<MicroBatch> MakeBatches(int rank, int step, int micro) {
  std::vector<MicroBatch> out;
  for (int m = 0; m < micro; ++m) {
    torch::manual_seed(10000 * rank + 100 * step + m);
    out.push_back({torch::randn({4, 3, 6, 6}), torch::randint(0, 5, {4})});
  }
  return out;
}

// One rank's forward and backward over its micro-batches; `before_last` runs just before the
// last backward (where the trainer arms the bucketer).
void Backward(Net& net, int rank, const std::vector<MicroBatch>& batches,
              const std::function<void()>& before_last) {
  const int micro = static_cast<int>(batches.size());
  for (int m = 0; m < micro; ++m) {
    torch::Tensor loss =
        torch::nn::functional::cross_entropy(net->forward(batches[m].x, rank == 0), batches[m].y);
    if (m + 1 == micro && before_last) before_last();
    (loss / static_cast<double>(micro)).backward();
  }
}

std::vector<torch::Tensor> Grads(const Net& net) {
  std::vector<torch::Tensor> out;
  for (const auto& p : net->parameters()) {
    out.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  }
  return out;
}

// (world size, bucket bytes, micro-batches per step)
class GradientBucketerTest : public ::testing::TestWithParam<std::tuple<int, int64_t, int>> {
 protected:
  int size() const { return std::get<0>(GetParam()); }
  int64_t bucket_bytes() const { return std::get<1>(GetParam()); }
  int micro() const { return std::get<2>(GetParam()); }
};

TEST_P(GradientBucketerTest, MatchesTheAllReduceAfterBackward) {
  // One intra-op thread: with several ranks' threads sharing LibTorch's pool, a parallel
  // reduction (BatchNorm's backward) may split differently between two identical backward
  // passes, and this test compares the averaging, not LibTorch's determinism.
  torch::set_num_threads(1);
  Comms comms = Connect(size());
  // Per rank: `bucketed` trains with the bucketer, `reference` with AllReduceGradients; both
  // start from the same weights.
  std::vector<Net> bucketed, reference;
  for (int r = 0; r < size(); ++r) {
    torch::manual_seed(7);
    bucketed.emplace_back();
    torch::manual_seed(7);
    reference.emplace_back();
  }
  std::vector<std::vector<std::vector<MicroBatch>>> batches(size());
  for (int r = 0; r < size(); ++r) {
    for (int step = 0; step < 2; ++step) batches[r].push_back(MakeBatches(r, step, micro()));
  }
  std::vector<absl::Status> statuses(size());
  std::vector<std::vector<std::vector<torch::Tensor>>> got(size()), want(size());
  std::vector<int> buckets(size());
  RunRanks(size(), [&](int r) {
    BucketerOptions options;
    options.bucket_bytes = bucket_bytes();
    auto bucketer = GradientBucketer::Create(bucketed[r]->parameters(), comms[r].get(), options);
    auto averager = ModelAverager::ForModule(*reference[r]);
    if (!bucketer.ok() || !averager.ok()) {
      statuses[r] = bucketer.ok() ? averager.status() : bucketer.status();
      return;
    }
    buckets[r] = (*bucketer)->num_buckets();
    for (int step = 0; step < 2; ++step) {  // the second step reuses the buckets
      bucketed[r]->zero_grad();
      reference[r]->zero_grad();
      Backward(bucketed[r], r, batches[r][step], [&] { (*bucketer)->Arm(); });
      if (absl::Status s = (*bucketer)->Finish(); !s.ok()) {
        statuses[r] = s;
        return;
      }
      Backward(reference[r], r, batches[r][step], nullptr);
      if (absl::Status s = averager->AllReduceGradients(*comms[r]); !s.ok()) {
        statuses[r] = s;
        return;
      }
      got[r].push_back(Grads(bucketed[r]));
      want[r].push_back(Grads(reference[r]));
    }
  });
  for (int r = 0; r < size(); ++r)
    ASSERT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
  // 64 B buckets hold about one parameter each (of 12); 700 B ones a few; 25 MiB all of them.
  if (bucket_bytes() == 64) {
    EXPECT_GE(buckets[0], 10);
  } else if (bucket_bytes() == 700) {
    EXPECT_GT(buckets[0], 2);
    EXPECT_LT(buckets[0], 12);
  } else {
    EXPECT_EQ(buckets[0], 1);
  }
  const std::vector<std::string> names = bucketed[0]->named_parameters().keys();
  for (int r = 0; r < size(); ++r) {
    for (size_t step = 0; step < got[r].size(); ++step) {
      for (size_t i = 0; i < got[r][step].size(); ++i) {
        const std::string where = absl::StrCat("rank ", r, " step ", step, " ", names[i]);
        const torch::Tensor& g = got[r][step][i];
        const torch::Tensor& w = want[r][step][i];
        ASSERT_EQ(g.defined(), w.defined()) << where;
        // Same on every rank, bit for bit.
        EXPECT_TRUE(BitIdentical(g, got[0][step][i])) << where;
        if (!g.defined()) continue;
        if (size() <= 2) {
          EXPECT_TRUE(BitIdentical(g, w)) << where;
        } else {
          EXPECT_TRUE(torch::allclose(g, w, 1e-5, 1e-7))
              << where << ": max difference " << (g - w).abs().max().item<float>();
        }
      }
    }
  }
  // The unused parameter has no gradient anywhere, and the one only rank 0 uses has the mean.
  std::vector<std::string> keys = bucketed[0]->named_parameters().keys();
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].rfind("never.", 0) == 0) {
      EXPECT_FALSE(got[0][0][i].defined()) << keys[i];
    }
    if (keys[i].rfind("partly.", 0) == 0) {
      ASSERT_TRUE(got[size() - 1][0][i].defined()) << keys[i];
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GradientBucketerTest,
                         ::testing::Combine(::testing::Values(1, 2, 3),
                                            ::testing::Values(int64_t{64}, int64_t{700},
                                                              int64_t{25} << 20),
                                            ::testing::Values(1, 3)),
                         [](const ::testing::TestParamInfo<std::tuple<int, int64_t, int>>& info) {
                           return absl::StrCat("size", std::get<0>(info.param), "_bucket",
                                               std::get<1>(info.param), "B_micro",
                                               std::get<2>(info.param));
                         });

// Wraps a communicator and counts the started all-reduces, to observe when buckets leave.
class CountingCommunicator : public Communicator {
 public:
  explicit CountingCommunicator(Communicator* inner) : inner_(inner) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return inner_->backend(); }
  absl::Status AllReduceSum(torch::Tensor& t) override { return inner_->AllReduceSum(t); }
  absl::Status AllReduceAverage(torch::Tensor& t) override { return inner_->AllReduceAverage(t); }
  absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduceSum(torch::Tensor t) override {
    ++started;
    return inner_->StartAllReduceSum(std::move(t));
  }
  absl::Status Broadcast(torch::Tensor& t, int root) override { return inner_->Broadcast(t, root); }
  void Abort(const std::string& reason) override { inner_->Abort(reason); }
  bool aborted() const override { return inner_->aborted(); }
  int64_t bytes_sent() const override { return inner_->bytes_sent(); }
  std::atomic<int> started{0};

 private:
  Communicator* inner_;
};

TEST(GradientBucketerOverlapTest, BucketsLeaveWhileBackwardStillRuns) {
  Comms comms = Connect(2);
  const std::vector<std::vector<MicroBatch>> batches = {MakeBatches(0, 0, 1), MakeBatches(1, 0, 1)};
  std::vector<int> started_when_first_layer_done(2, -1);
  std::vector<int> buckets(2);
  std::vector<absl::Status> statuses(2);
  RunRanks(2, [&](int r) {
    torch::manual_seed(3);
    Net net;
    CountingCommunicator counting(comms[r].get());
    BucketerOptions options;
    options.bucket_bytes = 256;
    auto bucketer = GradientBucketer::Create(net->parameters(), &counting, options);
    if (!bucketer.ok()) {
      statuses[r] = bucketer.status();
      return;
    }
    buckets[r] = (*bucketer)->num_buckets();
    // The first layer's weight is the last gradient backward produces; this hook runs after the
    // bucketer's own hook on it.
    net->conv->weight.register_hook(
        [&, r](const torch::Tensor&) { started_when_first_layer_done[r] = counting.started; });
    Backward(net, r, batches[r], [&] { (*bucketer)->Arm(); });
    statuses[r] = (*bucketer)->Finish();
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(statuses[r].ok()) << statuses[r];
    // `partly` (rank 1) and `never` hold their buckets back until Finish(), but the buckets of
    // fc2 and the layers after them in bucket order have left before backward ended.
    EXPECT_GE(started_when_first_layer_done[r], 1) << "rank " << r;
    EXPECT_LT(started_when_first_layer_done[r], buckets[r]) << "rank " << r;
  }
}

TEST(GradientBucketerOverlapTest, UnarmedBackwardDoesNotCommunicate) {
  Comms comms = Connect(2);
  const std::vector<std::vector<MicroBatch>> batches = {MakeBatches(0, 0, 2), MakeBatches(1, 0, 2)};
  std::vector<int64_t> bytes(2);
  std::vector<absl::Status> statuses(2);
  RunRanks(2, [&](int r) {
    torch::manual_seed(3);
    Net net;
    BucketerOptions options;
    auto bucketer = GradientBucketer::Create(net->parameters(), comms[r].get(), options);
    if (!bucketer.ok()) {
      statuses[r] = bucketer.status();
      return;
    }
    Backward(net, r, batches[r], nullptr);
    bytes[r] = comms[r]->bytes_sent();
    statuses[r] = (*bucketer)->Finish();
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(bytes[r], 0) << "rank " << r;
    EXPECT_EQ(statuses[r].code(), absl::StatusCode::kFailedPrecondition) << statuses[r];
  }
}

TEST(GradientBucketerFailureTest, PeerFailureSurfacesFromFinishAndAbortsTheCommunicator) {
  Comms comms = Connect(2, absl::Seconds(5));
  // Rank 1 goes away before the step; rank 0's collectives must fail, not hang.
  comms[1]->Abort("rank 1 crashed");
  torch::manual_seed(3);
  Net net;
  BucketerOptions options;
  options.bucket_bytes = 256;
  auto bucketer = GradientBucketer::Create(net->parameters(), comms[0].get(), options);
  ASSERT_TRUE(bucketer.ok()) << bucketer.status();
  const absl::Time start = absl::Now();
  Backward(net, 0, MakeBatches(0, 0, 1), [&] { (*bucketer)->Arm(); });
  absl::Status s = (*bucketer)->Finish();
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(comms[0]->aborted());
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  // The next step fails fast, naming the abort.
  net->zero_grad();
  Backward(net, 0, MakeBatches(0, 1, 1), [&] { (*bucketer)->Arm(); });
  s = (*bucketer)->Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
}

TEST(GradientBucketerCreateTest, ValidatesArguments) {
  Comms comms = Connect(1);
  std::vector<torch::Tensor> params = {torch::zeros({3}, torch::requires_grad())};
  BucketerOptions options;
  EXPECT_FALSE(GradientBucketer::Create(params, nullptr, options).ok());
  options.bucket_bytes = 0;
  EXPECT_EQ(GradientBucketer::Create(params, comms[0].get(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.bucket_bytes = 1024;
  std::vector<torch::Tensor> ints = {torch::zeros({3}, torch::kInt64)};
  EXPECT_EQ(GradientBucketer::Create(ints, comms[0].get(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A frozen parameter is skipped, a large one gets its own bucket, in reverse order.
  std::vector<torch::Tensor> mixed = {
      torch::zeros({100}, torch::requires_grad()), torch::zeros({10}),
      torch::zeros({300}, torch::requires_grad()), torch::zeros({20}, torch::requires_grad())};
  options.bucket_bytes = 400;  // 100 floats
  auto bucketer = GradientBucketer::Create(mixed, comms[0].get(), options);
  ASSERT_TRUE(bucketer.ok()) << bucketer.status();
  // Grad parameters 0:[100] 1:[300] 2:[20], reversed: [20] then [300] then [100].
  // [20] fills the first bucket; [300] exceeds it and gets its own; [100] follows a full one.
  EXPECT_EQ((*bucketer)->bucket_layout(), (std::vector<std::vector<int>>{{0}, {1}, {2}}));
  options.bucket_bytes = 1600;  // 400 floats: [20] and [300] share one, [100] is alone
  bucketer = GradientBucketer::Create(mixed, comms[0].get(), options);
  ASSERT_TRUE(bucketer.ok()) << bucketer.status();
  EXPECT_EQ((*bucketer)->bucket_layout(), (std::vector<std::vector<int>>{{0, 1}, {2}}));
}

}  // namespace
}  // namespace qsr
