#include "worker/foreach_sgd.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

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
