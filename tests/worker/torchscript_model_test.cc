// TorchScriptModel: a module scripted by Python (testdata/make_torchscript_models.py, run here
// with the system's python3) trains under PyTorch's names; BatchNorm re-estimation matches
// PyTorch's momentum=None average; export files load back; bad files get errors naming them.
#include "worker/model/torchscript_model.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "worker/evaluator.h"
#include "worker/model/models.h"
#include "worker/model_export.h"

namespace qsr {
namespace {

std::string Dir() { return testing::TempDir() + "/torchscript_model_test"; }

class TorchScriptModelTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::filesystem::create_directories(Dir());
    const std::string cmd =
        absl::StrCat("/usr/bin/python3 ", QSR_TESTDATA_DIR, "/make_torchscript_models.py ", Dir());
    // Fails (not skips) without python3-torch: CI installs it (scripts/install-deps.sh).
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static std::shared_ptr<TorchScriptModel> Net() {
    absl::StatusOr<std::shared_ptr<TorchScriptModel>> m = TorchScriptModel::Load(Dir() + "/net.ts");
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *m : nullptr;
  }
};

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<std::string> Names(const torch::nn::Module& m) {
  std::vector<std::string> names;
  for (const auto& p : m.named_parameters()) names.push_back(p.key());
  for (const auto& b : m.named_buffers()) names.push_back(b.key());
  return names;
}

TEST_F(TorchScriptModelTest, NamesAreThePythonStateDictKeys) {
  auto m = Net();
  ASSERT_NE(m, nullptr);
  std::vector<std::string> want = Lines(Dir() + "/net_keys.txt");
  std::vector<std::string> got = Names(*m);
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);
  ASSERT_EQ(m->BatchNorms().size(), 2u);
  EXPECT_EQ(m->BatchNorms()[0].name, "bn");
  ASSERT_TRUE(m->BatchNorms()[0].momentum.has_value());
  EXPECT_DOUBLE_EQ(*m->BatchNorms()[0].momentum, 0.3);
  EXPECT_EQ(m->BatchNorms()[1].name, "block.1");
}

TEST_F(TorchScriptModelTest, TrainingStepUpdatesTheScriptedModule) {
  auto m = Net();
  ASSERT_NE(m, nullptr);
  ASSERT_TRUE(CheckScriptedOutput(*m, torch::zeros({2, 1, 8, 8}), 10).ok());
  const torch::Tensor before = m->script().attr("fc").toModule().attr("weight").toTensor().clone();
  torch::optim::SGD sgd(m->parameters(), torch::optim::SGDOptions(0.1));
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({4, 1, 8, 8});
  const torch::Tensor y = torch::tensor({1, 2, 3, 4});
  torch::nn::functional::cross_entropy(m->forward(x), y).backward();
  sgd.step();
  const torch::Tensor after = m->script().attr("fc").toModule().attr("weight").toTensor();
  EXPECT_FALSE(torch::allclose(before, after));
  // The scripted module's forward sees the update: the mirror shares its tensors.
  EXPECT_TRUE(torch::equal(after, m->named_parameters()["fc.weight"]));
}

TEST_F(TorchScriptModelTest, BatchNormReestimationMatchesPyTorchMomentumNone) {
  auto m = Net();
  ASSERT_NE(m, nullptr);
  torch::jit::Module batches = torch::jit::load(Dir() + "/bn_batches.pt");
  torch::jit::Module expected = torch::jit::load(Dir() + "/bn_expected.pt");
  int next = 0;
  absl::StatusOr<int> layers = ReestimateScriptedBatchNorm(
      *m,
      [&]() -> absl::StatusOr<torch::Tensor> {
        return batches.attr(absl::StrCat("b", next++)).toTensor();
      },
      4);
  ASSERT_TRUE(layers.ok()) << layers.status();
  EXPECT_EQ(*layers, 2);
  EXPECT_EQ(next, 4);
  for (const ScriptedBatchNorm& bn : m->BatchNorms()) {
    std::string key = bn.name;
    std::replace(key.begin(), key.end(), '.', '_');
    const torch::Tensor mean = expected.attr(key + "_mean").toTensor();
    const torch::Tensor var = expected.attr(key + "_var").toTensor();
    EXPECT_LE((bn.running_mean - mean).abs().max().item<double>(), 1e-5) << bn.name;
    EXPECT_LE((bn.running_var - var).abs().max().item<double>(),
              1e-5 * var.abs().max().item<double>())
        << bn.name;
    EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(),
              expected.attr(key + "_nbt").toTensor().item<int64_t>());
  }
}

TEST_F(TorchScriptModelTest, ExportsLoadBack) {
  auto m = Net();
  ASSERT_NE(m, nullptr);
  const std::string sd = Dir() + "/export_state_dict.pt";
  const std::string ts = Dir() + "/export.ts";
  ASSERT_TRUE(SavePyTorchStateDict(*m, sd).ok());
  ASSERT_TRUE(SaveScriptedModule(*m, ts).ok());
  const std::string cmd = absl::StrCat(
      "/usr/bin/python3 -c \"import torch; sd = torch.load('", sd, "'); ts = torch.jit.load('", ts,
      "'); keys = open('", Dir(), "/net_keys.txt').read().split();",
      " assert sorted(sd) == sorted(keys), sorted(sd);",
      " assert all(torch.equal(sd[k], v) for k, v in ts.state_dict().items())\"");
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST_F(TorchScriptModelTest, MissingFile) {
  auto m = TorchScriptModel::Load(Dir() + "/nothing.ts");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find("nothing.ts"), std::string::npos) << m.status();
}

TEST_F(TorchScriptModelTest, TorchSaveIsNotTorchScript) {
  auto m = TorchScriptModel::Load(Dir() + "/state_dict.pt");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("not a TorchScript archive"), std::string::npos)
      << m.status();
}

TEST_F(TorchScriptModelTest, NoParameters) {
  auto m = TorchScriptModel::Load(Dir() + "/no_params.ts");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("no parameters"), std::string::npos) << m.status();
}

TEST_F(TorchScriptModelTest, WrongOutputShape) {
  auto m = Net();
  ASSERT_NE(m, nullptr);
  absl::Status s = CheckScriptedOutput(*m, torch::zeros({2, 1, 8, 8}), 100);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("want [2, 100]"), std::string::npos) << s;
  s = CheckScriptedOutput(*m, torch::zeros({2, 3, 32, 32}), 10);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("forward fails on a batch of shape [2, 3, 32, 32]"), std::string::npos)
      << s;
  EXPECT_TRUE(m->is_training());
}

TEST_F(TorchScriptModelTest, SavedByNewerPyTorch) {
  auto m = TorchScriptModel::Load(Dir() + "/newer.ts");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("newer PyTorch"), std::string::npos) << m.status();
}

// A built-in model's model.pt is PyTorch's own: resnet18 at 3x32x32 loads into torchvision's
// ResNet-18 with the CIFAR stem, strictly, and gives the same logits.
TEST(ModelExportTest, Resnet18LoadsIntoTorchvision) {
  absl::StatusOr<std::shared_ptr<Model>> made = MakeModel("resnet18", 10, ModelInput{3, 32, 32});
  ASSERT_TRUE(made.ok()) << made.status();
  Model& m = **made;
  torch::manual_seed(5);
  {
    // Non-trivial BatchNorm statistics, so the buffers' names and values matter.
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 2; ++i) m.forward(torch::randn({8, 3, 32, 32}));
  }
  m.eval();
  const torch::Tensor x = torch::randn({4, 3, 32, 32});
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = m.forward(x);
  }
  const std::string dir = testing::TempDir() + "/resnet18_export";
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(SavePyTorchStateDict(m, dir + "/model.pt").ok());
  ASSERT_TRUE(SavePyTorchStateDict({{"x", x}, {"logits", logits}}, dir + "/batch.pt").ok());
  const std::string cmd = absl::StrCat(
      "/usr/bin/python3 -c \"import torch, torchvision;",
      " net = torchvision.models.resnet18(num_classes=10);",
      " net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False);",
      " net.maxpool = torch.nn.Identity();", " net.load_state_dict(torch.load('", dir,
      "/model.pt'), strict=True); net.eval();", " b = torch.load('", dir, "/batch.pt');",
      " d = (net(b['x']) - b['logits']).abs().max().item(); print('max abs diff', d);",
      " assert d <= 1e-4, d\"");
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

}  // namespace
}  // namespace qsr
