// init_model_path: weights saved by PyTorch (testdata/make_state_dicts.py) load into a LibTorch
// module with the same names; what LibTorch cannot read gets an error naming the file.
#include "worker/state_dict_import.h"

#include <torch/torch.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "worker/checkpoint.h"

namespace qsr {
namespace {

const std::string kData = std::string(QSR_TESTDATA_DIR);

struct Tiny : torch::nn::Module {
  Tiny() {
    fc = register_module("fc", torch::nn::Linear(4, 3));
    bn = register_module("bn", torch::nn::BatchNorm1d(3));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

void ExpectPythonValues(Tiny& m) {
  EXPECT_TRUE(torch::equal(m.fc->weight, torch::arange(12, torch::kFloat).reshape({3, 4}) / 10));
  EXPECT_TRUE(torch::equal(m.fc->bias, torch::tensor({1.0f, -2.0f, 3.0f})));
  EXPECT_TRUE(torch::equal(m.bn->weight, torch::tensor({0.5f, 0.25f, 2.0f})));
  EXPECT_TRUE(torch::equal(m.bn->running_mean, torch::tensor({0.1f, 0.2f, 0.3f})));
  EXPECT_EQ(m.bn->num_batches_tracked.item<int64_t>(), 7);
}

TEST(StateDictImportTest, LoadsTorchSaveStateDict) {
  Tiny m;
  absl::Status s = LoadInitialWeights(m, kData + "/tiny_state_dict.pt");
  ASSERT_TRUE(s.ok()) << s;
  ExpectPythonValues(m);
}

TEST(StateDictImportTest, DropsTheDistributedDataParallelPrefix) {
  Tiny m;
  absl::Status s = LoadInitialWeights(m, kData + "/tiny_ddp_state_dict.pt");
  ASSERT_TRUE(s.ok()) << s;
  ExpectPythonValues(m);
}

TEST(StateDictImportTest, LoadsTorchScriptModule) {
  Tiny m;
  absl::Status s = LoadInitialWeights(m, kData + "/tiny_torchscript.pt");
  ASSERT_TRUE(s.ok()) << s;
  ExpectPythonValues(m);
}

TEST(StateDictImportTest, LoadsOwnArchive) {
  Tiny a, b;
  ASSERT_TRUE(LoadInitialWeights(a, kData + "/tiny_state_dict.pt").ok());
  const std::string path = testing::TempDir() + "/own.pt";
  ASSERT_TRUE(SaveModule(a, path).ok());
  ASSERT_TRUE(LoadInitialWeights(b, path).ok());
  ExpectPythonValues(b);
}

TEST(StateDictImportTest, AnOrderedDictIsAClearError) {
  Tiny m;
  absl::Status s = LoadInitialWeights(m, kData + "/tiny_ordered_state_dict.pt");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("tiny_ordered_state_dict.pt"), std::string::npos) << s;
  EXPECT_NE(s.message().find("save dict(model.state_dict()) instead"), std::string::npos) << s;
}

TEST(StateDictImportTest, ALegacyFileIsAClearError) {
  Tiny m;
  absl::Status s = LoadInitialWeights(m, kData + "/tiny_legacy.pt");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("tiny_legacy.pt"), std::string::npos) << s;
  EXPECT_NE(s.message().find("torch.save(dict(model.state_dict()), path)"), std::string::npos) << s;
}

TEST(StateDictImportTest, AModelThatDoesNotFitNamesTheEntries) {
  struct Other : torch::nn::Module {
    Other() { register_module("fc", torch::nn::Linear(4, 5)); }
  } m;
  absl::Status s = LoadInitialWeights(m, kData + "/tiny_state_dict.pt");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("fc.weight"), std::string::npos) << s;
  EXPECT_NE(s.message().find("unexpected bn."), std::string::npos) << s;
  EXPECT_EQ(LoadInitialWeights(m, kData + "/none.pt").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace qsr
