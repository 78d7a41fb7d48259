#include "worker/model/models.h"

#include <torch/torch.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace qsr {
namespace {

std::shared_ptr<Model> Make(const std::string& name, uint64_t seed) {
  torch::manual_seed(seed);
  absl::StatusOr<std::shared_ptr<Model>> model = MakeModel(name);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

TEST(ModelsTest, ParameterCounts) {
  EXPECT_EQ(NumParameters(*Make("mlp", 0)), 669706);
  EXPECT_EQ(NumParameters(*Make("cnn", 0)), 824650);
}

TEST(ModelsTest, OutputShapesAndBackward) {
  for (const std::string& name : KnownModels()) {
    std::shared_ptr<Model> model = Make(name, 1);
    ASSERT_NE(model, nullptr);
    EXPECT_TRUE(model->is_training());
    const torch::Tensor x = torch::randn({5, 1, 28, 28});
    const torch::Tensor y = torch::randint(10, {5}, torch::kLong);
    torch::Tensor logits = model->forward(x);
    EXPECT_EQ(logits.sizes(), (torch::IntArrayRef{5, 10})) << name;
    torch::nn::functional::cross_entropy(logits, y).backward();
    for (const auto& p : model->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << name << " " << p.key();
    }
  }
  absl::StatusOr<std::shared_ptr<Model>> wide = MakeModel("cnn", 47);
  ASSERT_TRUE(wide.ok());
  EXPECT_EQ((*wide)->forward(torch::randn({2, 1, 28, 28})).sizes(), (torch::IntArrayRef{2, 47}));
}

TEST(ModelsTest, StableParameterAndBufferOrder) {
  std::vector<std::string> names;
  for (const auto& p : Make("cnn", 0)->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias",
                                             "conv2.weight", "conv2.bias", "bn2.weight", "bn2.bias",
                                             "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  names.clear();
  for (const auto& b : Make("cnn", 0)->named_buffers()) names.push_back(b.key());
  EXPECT_EQ(names, (std::vector<std::string>{"bn1.running_mean", "bn1.running_var",
                                             "bn1.num_batches_tracked", "bn2.running_mean",
                                             "bn2.running_var", "bn2.num_batches_tracked"}));
  names.clear();
  for (const auto& p : Make("mlp", 0)->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                             "fc3.weight", "fc3.bias"}));
}

TEST(ModelsTest, IdenticalInitUnderTheSameSeed) {
  for (const std::string& name : KnownModels()) {
    std::shared_ptr<Model> a = Make(name, 1234);
    std::shared_ptr<Model> b = Make(name, 1234);
    std::shared_ptr<Model> c = Make(name, 99);
    const std::vector<torch::Tensor> pa = a->parameters(), pb = b->parameters(),
                                     pc = c->parameters();
    ASSERT_EQ(pa.size(), pb.size());
    bool any_differs = false;
    for (size_t i = 0; i < pa.size(); ++i) {
      EXPECT_TRUE(torch::equal(pa[i], pb[i])) << name << " parameter " << i;
      any_differs |= !torch::equal(pa[i], pc[i]);
    }
    EXPECT_TRUE(any_differs) << name << ": a different seed should give different weights";
  }
}

TEST(ModelsTest, ChannelsLastInputGivesTheSameOutput) {
  std::shared_ptr<Model> model = Make("cnn", 3);
  model->eval();
  const torch::Tensor x = torch::randn({4, 1, 28, 28});
  const torch::Tensor a = model->forward(x);
  const torch::Tensor b = model->forward(x.contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5));
}

TEST(ModelsTest, UnknownNameListsModels) {
  absl::StatusOr<std::shared_ptr<Model>> model = MakeModel("resnet");
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(model.status().message());
  EXPECT_NE(msg.find("resnet"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mlp, cnn"), std::string::npos) << msg;
  EXPECT_EQ(MakeModel("mlp", 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qsr
