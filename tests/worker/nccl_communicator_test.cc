// Tests of NcclCommunicator. The rendezvous checks run anywhere; the rest need a CUDA device and a
// CUDA LibTorch and skip cleanly without them (set QSR_REQUIRE_GPU=1 to make that skip a failure,
// as scripts/gpu-check.sh does on the GPU machine). NCCL allows one rank per GPU, so the GPU tests
// use world size 1, plus a world-2 Create whose peer never comes.
#include "worker/comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "rendezvous/store.h"
#include "worker/comm/communicator_factory.h"
#include "worker/comm/gradient_bucketer.h"
#include "worker/comm/model_averager.h"

namespace qsr {
namespace {

using ::testing::HasSubstr;

bool RequireGpu() {
  const char* v = std::getenv("QSR_REQUIRE_GPU");
  return v != nullptr && std::string(v) == "1";
}

#define SKIP_WITHOUT_GPU()                                                              \
  do {                                                                                  \
    if (!torch::cuda::is_available()) {                                                 \
      if (RequireGpu()) FAIL() << "QSR_REQUIRE_GPU=1 but LibTorch sees no CUDA device"; \
      GTEST_SKIP() << "no CUDA device (or a CPU-only LibTorch)";                        \
    }                                                                                   \
  } while (0)

std::unique_ptr<NcclCommunicator> CreateWorldOne() {
  absl::StatusOr<std::unique_ptr<NcclCommunicator>> comm =
      NcclCommunicator::Create(nullptr, 0, 1, 0, absl::Seconds(60));
  EXPECT_TRUE(comm.ok()) << comm.status();
  return comm.ok() ? std::move(*comm) : nullptr;
}

torch::TensorOptions Cuda(torch::Dtype dtype = torch::kFloat32) {
  return torch::TensorOptions().dtype(dtype).device(torch::kCUDA, 0);
}

// ---- Anywhere (no GPU needed) ----

TEST(NcclCommunicatorTest, RejectsBadArguments) {
  InMemoryStore store;
  const absl::Duration t = absl::Seconds(1);
  EXPECT_EQ(NcclCommunicator::Create(&store, 0, 0, 0, t).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NcclCommunicator::Create(&store, -1, 2, 0, t).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NcclCommunicator::Create(&store, 2, 2, 0, t).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NcclCommunicator::Create(&store, 0, 1, -1, t).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NcclCommunicator::Create(&store, 0, 1, 0, absl::ZeroDuration()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NcclCommunicator::Create(nullptr, 0, 2, 0, t).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NcclCommunicatorTest, MissingUniqueIdTimesOutNamingRankZero) {
  InMemoryStore store;
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<NcclCommunicator>> comm =
      NcclCommunicator::Create(&store, 1, 2, 0, absl::Milliseconds(300));
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kDeadlineExceeded) << comm.status();
  EXPECT_THAT(std::string(comm.status().message()), HasSubstr("rank 0"));
  EXPECT_THAT(std::string(comm.status().message()), HasSubstr("nccl_id"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(NcclCommunicatorTest, WrongSizeUniqueIdBlamesRankZero) {
  InMemoryStore store;
  ASSERT_TRUE(store.Set(NcclCommunicator::kUniqueIdKey, "not an id").ok());
  absl::StatusOr<std::unique_ptr<NcclCommunicator>> comm =
      NcclCommunicator::Create(&store, 1, 2, 0, absl::Seconds(5));
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kInvalidArgument) << comm.status();
  EXPECT_THAT(std::string(comm.status().message()), HasSubstr("rank 0"));
  EXPECT_THAT(std::string(comm.status().message()), HasSubstr("9 bytes"));
}

TEST(NcclCommunicatorTest, NoCudaDeviceIsFailedPrecondition) {
  int count = 0;
  if (cudaGetDeviceCount(&count) == cudaSuccess && count > 0) {
    GTEST_SKIP() << "this machine has a CUDA device";
  }
  cudaGetLastError();
  absl::StatusOr<std::unique_ptr<NcclCommunicator>> comm =
      NcclCommunicator::Create(nullptr, 0, 1, 0, absl::Seconds(5));
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition) << comm.status();
}

TEST(NcclCommunicatorTest, BytesSentFollowTheRing) {
  EXPECT_EQ(NcclCommunicator::RingAllReduceBytesSent(1000, 1), 0);
  EXPECT_EQ(NcclCommunicator::RingAllReduceBytesSent(1000, 2), 1000);
  EXPECT_EQ(NcclCommunicator::RingAllReduceBytesSent(1000, 4), 1500);
  for (int n : {1, 2, 3, 5}) {
    for (int root = 0; root < n; ++root) {
      int64_t total = 0;
      for (int r = 0; r < n; ++r) total += NcclCommunicator::BroadcastBytesSent(100, r, root, n);
      EXPECT_EQ(total, 100 * (n - 1)) << "n=" << n << " root=" << root;
      EXPECT_EQ(NcclCommunicator::BroadcastBytesSent(100, root, root, n), n > 1 ? 100 : 0);
    }
  }
}

// ---- On a GPU ----

TEST(NcclCommunicatorGpuTest, AllReduceAndBroadcastWorldOne) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<NcclCommunicator> comm = CreateWorldOne();
  ASSERT_NE(comm, nullptr);
  EXPECT_EQ(comm->backend(), "nccl");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{3} << 20}) {
    torch::Tensor t = torch::arange(n, Cuda()).mul_(0.5);
    torch::Tensor expected = t.clone();
    ASSERT_TRUE(comm->AllReduceSum(t).ok());
    EXPECT_TRUE(torch::equal(t, expected)) << "n=" << n;
  }
  torch::Tensor ints = torch::arange(17, Cuda(torch::kInt64));
  ASSERT_TRUE(comm->Broadcast(ints, 0).ok());
  EXPECT_TRUE(torch::equal(ints.cpu(), torch::arange(17, torch::kInt64)));
  torch::Tensor empty = torch::empty({0}, Cuda());
  EXPECT_TRUE(comm->AllReduceSum(empty).ok());
  EXPECT_EQ(comm->bytes_sent(), 0);  // One rank sends nothing.
  EXPECT_FALSE(comm->aborted());
}

// One rank's mean is itself: this runs ncclAvg, and bfloat16 where NCCL has it, end to end.
TEST(NcclCommunicatorGpuTest, AllReduceAverageWorldOneKeepsFloatAndBfloat16) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<NcclCommunicator> comm = CreateWorldOne();
  ASSERT_NE(comm, nullptr);
  torch::Tensor f = torch::arange(1001, Cuda()).mul_(0.25);
  const torch::Tensor f_expected = f.clone();
  ASSERT_TRUE(comm->AllReduceAverage(f).ok());
  EXPECT_TRUE(torch::equal(f, f_expected));
  torch::Tensor h = torch::arange(1001, Cuda()).remainder_(64).to(torch::kBFloat16);
  const torch::Tensor h_expected = h.clone();
  const absl::Status s = comm->AllReduceAverage(h);
  if (NcclCommunicator::AveragesBfloat16()) {
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_TRUE(torch::equal(h, h_expected));
  } else {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
  torch::Tensor f64 = torch::ones({4}, Cuda(torch::kFloat64));
  EXPECT_EQ(comm->AllReduceAverage(f64).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(comm->aborted());
}

TEST(NcclCommunicatorGpuTest, RejectsBadTensorsWithoutAborting) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<NcclCommunicator> comm = CreateWorldOne();
  ASSERT_NE(comm, nullptr);
  torch::Tensor cpu = torch::ones({4});
  torch::Tensor f64 = torch::ones({4}, Cuda(torch::kFloat64));
  torch::Tensor strided = torch::ones({4, 4}, Cuda()).t();
  torch::Tensor undefined;
  for (torch::Tensor* t : {&cpu, &f64, &strided, &undefined}) {
    absl::Status s = comm->AllReduceSum(*t);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
  torch::Tensor ok = torch::ones({4}, Cuda());
  EXPECT_EQ(comm->Broadcast(ok, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->Broadcast(cpu, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(comm->aborted());
  EXPECT_TRUE(comm->AllReduceSum(ok).ok());
}

TEST(NcclCommunicatorGpuTest, AbortIsIdempotentAndSticky) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<NcclCommunicator> comm = CreateWorldOne();
  ASSERT_NE(comm, nullptr);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&comm, i] { comm->Abort(i == 0 ? "first" : "later"); });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(comm->aborted());
  const std::string reason = comm->abort_reason();
  comm->Abort("after");
  EXPECT_EQ(comm->abort_reason(), reason);
  torch::Tensor t = torch::ones({8}, Cuda());
  absl::Status s = comm->AllReduceSum(t);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr(reason));
  EXPECT_EQ(comm->Broadcast(t, 0).code(), absl::StatusCode::kFailedPrecondition);
  // Destroying an aborted communicator must not hang or crash.
  comm.reset();
}

TEST(NcclCommunicatorGpuTest, ModelAveragerOverNccl) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<NcclCommunicator> comm = CreateWorldOne();
  ASSERT_NE(comm, nullptr);
  torch::manual_seed(3);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3)),
                            torch::nn::BatchNorm2d(4), torch::nn::Flatten(),
                            torch::nn::Linear(4 * 6 * 6, 3));
  net->to(torch::Device(torch::kCUDA, 0));
  torch::Tensor loss = net->forward(torch::randn({5, 1, 8, 8}, Cuda())).square().mean();
  loss.backward();
  std::vector<torch::Tensor> before;
  std::vector<torch::Tensor> grads;
  for (const auto& p : net->parameters()) {
    before.push_back(p.detach().clone());
    grads.push_back(p.grad().clone());
  }
  absl::StatusOr<ModelAverager> averager = ModelAverager::ForModule(*net);
  ASSERT_TRUE(averager.ok()) << averager.status();
  ASSERT_TRUE(averager->BroadcastFrom(*comm, 0).ok());
  ASSERT_TRUE(averager->Average(*comm).ok());
  ASSERT_TRUE(averager->AllReduceGradients(*comm).ok());
  std::vector<torch::Tensor> params = net->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(params[i].is_cuda());
    EXPECT_TRUE(torch::equal(params[i].detach(), before[i])) << "parameter " << i;
    EXPECT_TRUE(torch::equal(params[i].grad(), grads[i])) << "gradient " << i;
  }
}

// sync_overlap over NCCL: the copy sent, the model trained on meanwhile, the result applied; and
// the asynchronous sum in bfloat16 where NCCL has the type.
TEST(NcclCommunicatorGpuTest, OverlappedAverageAndBfloat16StartedSumWorldOne) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<NcclCommunicator> comm = CreateWorldOne();
  ASSERT_NE(comm, nullptr);
  torch::manual_seed(4);
  torch::nn::Linear net(16, 8);
  net->to(torch::Device(torch::kCUDA, 0));
  absl::StatusOr<ModelAverager> averager = ModelAverager::ForModule(*net);
  ASSERT_TRUE(averager.ok()) << averager.status();
  ASSERT_TRUE(averager->StartAverage(*comm).ok());
  std::vector<torch::Tensor> expected;
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->parameters()) {
      p.add_(0.5);  // a step taken while the sync travels
      expected.push_back(p.detach().clone());
    }
  }
  ASSERT_TRUE(averager->FinishAverage().ok());
  std::vector<torch::Tensor> params = net->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(torch::equal(params[i].detach(), expected[i])) << "parameter " << i;
  }
  torch::Tensor h = torch::arange(1001, Cuda()).remainder_(64).to(torch::kBFloat16);
  const torch::Tensor h_expected = h.clone();
  absl::StatusOr<std::unique_ptr<PendingCollective>> started = comm->StartAllReduceSum(h);
  if (NcclCommunicator::AveragesBfloat16()) {
    ASSERT_TRUE(started.ok()) << started.status();
    ASSERT_TRUE((*started)->Wait().ok());
    EXPECT_TRUE(torch::equal(h, h_expected));
  } else {
    EXPECT_EQ(started.status().code(), absl::StatusCode::kInvalidArgument) << started.status();
  }
  EXPECT_FALSE(comm->aborted());
}

TEST(NcclCommunicatorGpuTest, StartedAllReducesCompleteInOrderWorldOne) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<NcclCommunicator> comm = CreateWorldOne();
  ASSERT_NE(comm, nullptr);
  // Each tensor is written on the compute stream right before its start: the collective on the
  // communication stream must see the write (it waits for the compute stream).
  std::vector<torch::Tensor> tensors;
  std::vector<std::unique_ptr<PendingCollective>> pending;
  for (int64_t n : {int64_t{7}, int64_t{4} << 20, int64_t{0}, int64_t{1000}}) {
    tensors.push_back(torch::zeros({n}, Cuda()));
    tensors.back().fill_(static_cast<double>(n % 97) + 0.25);
    auto p = comm->StartAllReduceSum(tensors.back());
    ASSERT_TRUE(p.ok()) << p.status();
    pending.push_back(std::move(*p));
  }
  for (auto& p : pending) {
    EXPECT_TRUE(p->Wait().ok());
    EXPECT_TRUE(p->Wait().ok());  // idempotent
  }
  for (const torch::Tensor& t : tensors) {
    const double v = static_cast<double>(t.numel() % 97) + 0.25;
    EXPECT_TRUE(torch::equal(t, torch::full_like(t, v))) << "n=" << t.numel();
  }
  auto bad = comm->StartAllReduceSum(torch::ones({3}));  // a CPU tensor
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_FALSE(comm->aborted());
  comm->Abort("test over");
  auto after = comm->StartAllReduceSum(torch::ones({3}, Cuda()));
  EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition) << after.status();
}

TEST(NcclCommunicatorGpuTest, GradientBucketerOverNcclMatchesAllReduceAfterBackward) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<NcclCommunicator> comm = CreateWorldOne();
  ASSERT_NE(comm, nullptr);
  auto make = [] {
    torch::manual_seed(5);
    torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3)),
                              torch::nn::BatchNorm2d(8), torch::nn::ReLU(), torch::nn::Flatten(),
                              torch::nn::Linear(8 * 6 * 6, 32), torch::nn::ReLU(),
                              torch::nn::Linear(32, 3));
    net->to(torch::Device(torch::kCUDA, 0));
    return net;
  };
  torch::nn::Sequential bucketed = make(), reference = make();
  BucketerOptions options;
  options.bucket_bytes = 1024;  // several buckets
  auto bucketer = GradientBucketer::Create(bucketed->parameters(), comm.get(), options);
  ASSERT_TRUE(bucketer.ok()) << bucketer.status();
  EXPECT_GT((*bucketer)->num_buckets(), 2);
  absl::StatusOr<ModelAverager> averager = ModelAverager::ForModule(*reference);
  ASSERT_TRUE(averager.ok()) << averager.status();
  for (int step = 0; step < 2; ++step) {
    for (auto* net : {&bucketed, &reference}) {
      (*net)->zero_grad();
      for (int micro = 0; micro < 2; ++micro) {  // accumulation: only the last one sends
        torch::manual_seed(100 * step + micro);
        torch::Tensor x = torch::randn({6, 1, 8, 8}, Cuda());
        torch::Tensor loss = (*net)->forward(x).square().mean();
        if (net == &bucketed && micro == 1) (*bucketer)->Arm();
        loss.backward();
      }
    }
    ASSERT_TRUE((*bucketer)->Finish().ok());
    ASSERT_TRUE(averager->AllReduceGradients(*comm).ok());
    std::vector<torch::Tensor> got = bucketed->parameters(), want = reference->parameters();
    for (size_t i = 0; i < got.size(); ++i) {
      // cuDNN's weight gradients may differ in the last bits between two backward passes.
      EXPECT_TRUE(torch::allclose(got[i].grad(), want[i].grad(), 1e-5, 1e-6))
          << "step " << step << " param " << i;
    }
  }
}

TEST(NcclCommunicatorGpuTest, FactoryPicksNcclForCuda) {
  SKIP_WITHOUT_GPU();
  EXPECT_TRUE(HaveNccl());
  EXPECT_TRUE(CheckDevice("cuda:0").ok());
  InMemoryStore store;
  CommunicatorOptions options;
  options.timeout = absl::Seconds(60);
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateCommunicator(torch::Device("cuda:0"), &store, 0, 1, options);
  ASSERT_TRUE(comm.ok()) << comm.status();
  EXPECT_EQ((*comm)->backend(), "nccl");
}

TEST(NcclCommunicatorGpuTest, SuccessiveCommunicatorsOnOneDevice) {
  SKIP_WITHOUT_GPU();
  // One per generation, created after the previous one is destroyed (the healthy destructor path:
  // finalize, then destroy).
  for (int generation = 0; generation < 3; ++generation) {
    std::unique_ptr<NcclCommunicator> comm = CreateWorldOne();
    ASSERT_NE(comm, nullptr);
    torch::Tensor t = torch::full({1024}, generation, Cuda());
    ASSERT_TRUE(comm->AllReduceSum(t).ok());
    EXPECT_EQ(t[7].item<float>(), static_cast<float>(generation));
  }
}

TEST(NcclCommunicatorGpuTest, MissingPeerFailsWithinTheTimeout) {
  SKIP_WITHOUT_GPU();
  InMemoryStore store;
  PrefixStore scoped("run/g0/c0", &store);
  const absl::Duration timeout = absl::Seconds(3);
  // Create() runs on its own thread so that a hang shows up as a failure, not a stuck test.
  auto result = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> done = result->get_future();
  const absl::Time start = absl::Now();
  std::thread([result, &scoped, timeout] {
    absl::StatusOr<std::unique_ptr<NcclCommunicator>> comm =
        NcclCommunicator::Create(&scoped, 0, 2, 0, timeout);
    result->set_value(comm.status());
  }).detach();
  if (done.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "Create() with a missing peer did not return within 60 s";
    std::_Exit(1);  // The stuck thread still references the store; do not unwind under it.
  }
  const absl::Status status = done.get();
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("peer"));
  EXPECT_GE(elapsed, timeout - absl::Milliseconds(100));
  EXPECT_LT(elapsed, timeout + absl::Seconds(20)) << "took " << elapsed;
  // Rank 0 published its id under the scoped key before waiting.
  absl::StatusOr<std::vector<std::string>> id =
      store.Get({"run/g0/c0/nccl_id"}, absl::Now() + absl::Seconds(1));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->front().size(), 128u);
}

}  // namespace
}  // namespace qsr
