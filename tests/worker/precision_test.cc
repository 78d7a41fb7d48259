#include "worker/precision.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace qsr {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(CheckPrecisionTest, Fp32AnywhereBf16OnTheCpu) {
  EXPECT_TRUE(CheckPrecision("fp32", torch::Device(torch::kCPU)).ok());
  EXPECT_TRUE(CheckPrecision("fp32", torch::Device(torch::kCUDA, 0)).ok());
  EXPECT_TRUE(CheckPrecision("bf16", torch::Device(torch::kCPU)).ok());
}

TEST(CheckPrecisionTest, UnknownValueNamesTheAllowedOnes) {
  absl::Status s = CheckPrecision("fp8", torch::Device(torch::kCPU));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              AllOf(HasSubstr("precision \"fp8\""), HasSubstr("allowed: fp32"), HasSubstr("bf16")));
}

// The recipe accepts fp16, but the worker cannot train with it on the CPU (nor, until the fp16
// step is wired, on a GPU): the error names the key, the device and the allowed values.
TEST(CheckPrecisionTest, Fp16IsRefusedOnTheCpuNamingKeyAndAllowedValues) {
  absl::Status s = CheckPrecision("fp16", torch::Device(torch::kCPU));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), AllOf(HasSubstr("precision: fp16"), HasSubstr("cpu"),
                                              HasSubstr("allowed: fp32"), HasSubstr("bf16")));
}

TEST(CheckPrecisionTest, Bf16OnAGpuThatCannotBeCheckedOrLacksItIsAnError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has a CUDA device";
  // No usable GPU here: the error names the key, the device and what is allowed.
  absl::Status s = CheckPrecision("bf16", torch::Device(torch::kCUDA, 0));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), AllOf(HasSubstr("precision: bf16"), HasSubstr("cuda:0")));
}

TEST(AutocastScopeTest, ComputesInBfloat16AndKeepsWeightsAndGradientsFloat32) {
  torch::manual_seed(0);
  torch::nn::Linear fc(8, 4);
  torch::Tensor x = torch::randn({5, 8});
  torch::Tensor out, loss;
  {
    AutocastScope scope(true, torch::kCPU);
    out = fc->forward(x);
    loss = torch::nn::functional::cross_entropy(out, torch::randint(0, 4, {5}));
  }
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(loss.scalar_type(), torch::kFloat32);  // losses run in float32 under autocast
  loss.backward();
  EXPECT_EQ(fc->weight.scalar_type(), torch::kFloat32);
  ASSERT_TRUE(fc->weight.grad().defined());
  EXPECT_EQ(fc->weight.grad().scalar_type(), torch::kFloat32);
  // After the scope, float32 again.
  EXPECT_EQ(fc->forward(x).scalar_type(), torch::kFloat32);
}

TEST(AutocastScopeTest, DisabledScopeChangesNothingAndScopesNest) {
  torch::nn::Linear fc(8, 4);
  torch::Tensor x = torch::randn({2, 8});
  {
    AutocastScope off(false, torch::kCPU);
    EXPECT_EQ(fc->forward(x).scalar_type(), torch::kFloat32);
  }
  {
    AutocastScope outer(true, torch::kCPU);
    {
      AutocastScope inner(true, torch::kCPU);
      EXPECT_EQ(fc->forward(x).scalar_type(), torch::kBFloat16);
    }
    // The inner scope restored the outer one's state.
    EXPECT_EQ(fc->forward(x).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(fc->forward(x).scalar_type(), torch::kFloat32);
}

TEST(AutocastScopeTest, Bf16TrainingLearns) {
  // Two Gaussian blobs: a small MLP trained under bf16 autocast must separate them.
  torch::manual_seed(1);
  torch::nn::Sequential net(torch::nn::Linear(4, 32), torch::nn::ReLU(), torch::nn::Linear(32, 2));
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  torch::Tensor y = torch::randint(0, 2, {256});
  torch::Tensor x = torch::randn({256, 4}) + y.unsqueeze(1).to(torch::kFloat32) * 2.0 - 1.0;
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    sgd.zero_grad();
    torch::Tensor loss;
    {
      AutocastScope scope(true, torch::kCPU);
      loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    }
    loss.backward();
    sgd.step();
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
  for (const auto& p : net->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat32);
}

}  // namespace
}  // namespace qsr
