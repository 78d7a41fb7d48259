#include "worker/foreach_sgd.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "worker/clear_gradients.h"

namespace qsr {
namespace {

struct Case {
  std::string name;
  double momentum, dampening, weight_decay;
  bool nesterov;
  bool two_groups;  // a second group with its own lr and no weight decay
};

std::vector<torch::Device> Devices() {
  std::vector<torch::Device> devices = {torch::Device(torch::kCPU)};
  if (torch::cuda::is_available()) devices.emplace_back(torch::kCUDA, 0);
  return devices;
}

// Parameters of mixed shapes; the last one gets no gradient (an unused parameter).
std::vector<torch::Tensor> MakeParams(torch::Device device) {
  torch::manual_seed(7);
  std::vector<torch::Tensor> params;
  for (auto shape : std::vector<std::vector<int64_t>>{{4, 3}, {3}, {2, 2, 3}, {1}, {5}}) {
    params.push_back(torch::randn(shape).to(device).requires_grad_(true));
  }
  return params;
}

template <typename Opt>
std::unique_ptr<torch::optim::Optimizer> Make(const Case& c, std::vector<torch::Tensor>& params) {
  torch::optim::SGDOptions options(0.1);
  options.momentum(c.momentum).dampening(c.dampening).weight_decay(c.weight_decay);
  options.nesterov(c.nesterov);
  if (!c.two_groups) return std::make_unique<Opt>(params, options);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>(params.begin(), params.begin() + 2),
                      std::make_unique<torch::optim::SGDOptions>(options));
  torch::optim::SGDOptions other = options;
  other.lr(0.03).weight_decay(0);
  groups.emplace_back(std::vector<torch::Tensor>(params.begin() + 2, params.end()),
                      std::make_unique<torch::optim::SGDOptions>(other));
  return std::make_unique<Opt>(groups, options);
}

// Gives every parameter but the last a gradient that depends on the step and the parameter.
void FakeBackward(std::vector<torch::Tensor>& params, int step) {
  for (size_t i = 0; i + 1 < params.size(); ++i) {
    torch::Tensor g = torch::sin(params[i].detach() * (step + 1)) + 0.1 * static_cast<double>(i);
    params[i].mutable_grad() = g;
  }
}

class ForeachSgdTest : public ::testing::TestWithParam<Case> {};

TEST_P(ForeachSgdTest, MatchesLibTorchSgdOnEveryDevice) {
  const Case& c = GetParam();
  for (const torch::Device& device : Devices()) {
    SCOPED_TRACE(device.str());
    std::vector<torch::Tensor> a = MakeParams(device), b = MakeParams(device);
    auto reference = Make<torch::optim::SGD>(c, a);
    auto foreach = Make<ForeachSGD>(c, b);
    const torch::Tensor unused = b.back().detach().clone();
    for (int step = 0; step < 6; ++step) {
      FakeBackward(a, step);
      FakeBackward(b, step);
      reference->step();
      foreach
        ->step();
    }
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-6, 1e-6)) << "parameter " << i;
    }
    EXPECT_TRUE(torch::equal(b.back().detach(), unused)) << "a parameter without gradient moved";
    // The parameters without gradients get no state, the others a momentum buffer.
    EXPECT_EQ(foreach->state().size(), c.momentum != 0 ? a.size() - 1 : 0u);
  }
}

TEST_P(ForeachSgdTest, StateRoundTripsThroughLibTorchSgdSerialisation) {
  const Case& c = GetParam();
  std::vector<torch::Tensor> a = MakeParams(torch::kCPU), b = MakeParams(torch::kCPU);
  auto foreach = Make<ForeachSGD>(c, a);
  for (int step = 0; step < 3; ++step) {
    FakeBackward(a, step);
    foreach
      ->step();
  }
  // Saved by ForeachSGD, loaded by torch::optim::SGD (a checkpoint from either reads in either).
  std::ostringstream saved;
  {
    torch::serialize::OutputArchive archive;
    foreach
      ->save(archive);
    archive.save_to(saved);
  }
  for (size_t i = 0; i < a.size(); ++i) b[i].detach().copy_(a[i].detach());
  auto reference = Make<torch::optim::SGD>(c, b);
  std::istringstream in(saved.str());
  torch::serialize::InputArchive archive;
  archive.load_from(in);
  reference->load(archive);
  for (int step = 3; step < 5; ++step) {
    FakeBackward(a, step);
    FakeBackward(b, step);
    foreach
      ->step();
    reference->step();
  }
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-6, 1e-6)) << "parameter " << i;
  }
}

// The fused CPU pass takes dense parameters in any layout and splits large ones over the
// intra-op threads; a parameter that is not dense (a strided view) takes the foreach path. Both
// agree with LibTorch's SGD.
TEST_P(ForeachSgdTest, LargeTransposedAndStridedParametersMatchLibTorchSgdOnTwoThreads) {
  const Case& c = GetParam();
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  auto make = [] {
    torch::manual_seed(11);
    std::vector<torch::Tensor> params;
    // Larger than a fused chunk (16,384 elements), so that both threads take part.
    params.push_back(torch::randn({300, 257}).requires_grad_(true));
    params.push_back(torch::randn({64, 96}).t().detach().requires_grad_(true));  // transposed
    params.push_back(torch::randn({40, 30}).slice(1, 0, 30, 3).detach().requires_grad_(true));
    params.push_back(torch::randn({7}).requires_grad_(true));  // never gets a gradient
    return params;
  };
  std::vector<torch::Tensor> a = make(), b = make();
  ASSERT_FALSE(b[1].is_contiguous());
  ASSERT_TRUE(b[1].is_non_overlapping_and_dense());
  ASSERT_FALSE(b[2].is_non_overlapping_and_dense());
  auto reference = Make<torch::optim::SGD>(c, a);
  auto foreach = Make<ForeachSGD>(c, b);
  for (int step = 0; step < 4; ++step) {
    FakeBackward(a, step);
    FakeBackward(b, step);
    reference->step();
    foreach
      ->step();
  }
  at::set_num_threads(threads);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-6, 1e-6)) << "parameter " << i;
    EXPECT_EQ(a[i].strides(), b[i].strides()) << "parameter " << i;
  }
  EXPECT_EQ(foreach->state().size(), c.momentum != 0 ? 3u : 0u);
}

// ClearGradients drops every gradient; training with it matches training with zero_grad() when
// every parameter gets a gradient in every step.
TEST(ClearGradientsTest, DropsEveryGradientAndTrainsAsZeroGradDoes) {
  torch::manual_seed(3);
  torch::nn::Linear a(5, 3), b(5, 3);
  torch::NoGradGuard no_grad_copy;
  b->weight.copy_(a->weight);
  b->bias.copy_(a->bias);
  torch::optim::SGD sgd_a(a->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  ForeachSGD sgd_b(b->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  const torch::Tensor x = torch::randn({8, 5});
  for (int step = 0; step < 5; ++step) {
    at::AutoGradMode grad_mode(true);
    sgd_a.zero_grad();
    ClearGradients(sgd_b);
    for (const torch::Tensor& p : b->parameters()) EXPECT_FALSE(p.grad().defined());
    a->forward(x * (step + 1)).pow(2).sum().backward();
    b->forward(x * (step + 1)).pow(2).sum().backward();
    sgd_a.step();
    sgd_b.step();
  }
  EXPECT_TRUE(torch::allclose(a->weight, b->weight, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(a->bias, b->bias, 1e-6, 1e-6));
}

INSTANTIATE_TEST_SUITE_P(Options, ForeachSgdTest,
                         ::testing::Values(Case{"plain", 0, 0, 0, false, false},
                                           Case{"momentum", 0.9, 0, 0, false, false},
                                           Case{"momentum_decay", 0.9, 0, 5e-4, false, false},
                                           Case{"nesterov", 0.9, 0, 1e-3, true, false},
                                           Case{"dampening", 0.8, 0.3, 1e-2, false, false},
                                           Case{"two_groups", 0.9, 0, 5e-4, true, true}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace qsr
