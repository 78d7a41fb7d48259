// The "tensors" dataset: files written by torch.save in Python (testdata/make_tensor_files.py, run
// by the test with python3 and Debian's python3-torch) load as the splits they hold, and every
// fault gets an error naming the file and the key.
#include "worker/data/tensor_file.h"

#include <ATen/ATen.h>
#include <torch/script.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/data/datasets.h"

namespace qsr {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

class TensorFileTest : public ::testing::Test {
 protected:
  // Writes the files once for all tests; a missing python3 or torch fails every test.
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/tensor_files_" + std::to_string(getpid()));
    const std::string command =
        absl::StrCat(QSR_PYTHON, " ", QSR_TESTDATA_DIR, "/make_tensor_files.py ", *dir_, " 2>&1");
    made_ = std::system(command.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    std::filesystem::remove_all(*dir_, ec);
    delete dir_;
  }
  void SetUp() override {
    ASSERT_TRUE(made_) << "could not write the test files with " << QSR_PYTHON
                       << " (scripts/install-deps.sh installs python3-torch)";
  }
  static std::string File(const std::string& name) { return *dir_ + "/" + name + ".pt"; }

  static std::string* dir_;
  static bool made_;
};

std::string* TensorFileTest::dir_ = nullptr;
bool TensorFileTest::made_ = false;

TEST_F(TensorFileTest, Uint8OneChannelScalesToUnitRange) {
  absl::StatusOr<Dataset> train = LoadTensorFile(File("u8_nhw"), true);
  ASSERT_TRUE(train.ok()) << train.status();
  ASSERT_EQ(train->images.sizes(), (at::IntArrayRef{6, 1, 4, 5}));
  EXPECT_EQ(train->images.scalar_type(), at::kFloat);
  EXPECT_TRUE(train->images.is_contiguous());
  EXPECT_FLOAT_EQ(train->images[2][0][3][4].item<float>(), (10 * 3 + 4 + 2) / 255.0f);
  EXPECT_TRUE(at::equal(train->labels, at::tensor({0, 1, 2, 0, 1, 2}, at::kLong)));
  EXPECT_EQ(train->num_classes, 4);  // max label 3, in test_y
  EXPECT_TRUE(train->black.empty());

  absl::StatusOr<Dataset> test = LoadTensorFile(File("u8_nhw"), false);
  ASSERT_TRUE(test.ok()) << test.status();
  ASSERT_EQ(test->images.sizes(), (at::IntArrayRef{3, 1, 4, 5}));
  EXPECT_TRUE(at::equal(test->images, at::ones({3, 1, 4, 5})));
  EXPECT_TRUE(at::equal(test->labels, at::tensor({2, 3, 0}, at::kLong)));
  EXPECT_EQ(test->num_classes, 4);
}

TEST_F(TensorFileTest, MeanAndStdNormalise) {
  absl::StatusOr<Dataset> test = LoadTensorFile(File("u8_mean_std"), false);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_TRUE(at::allclose(test->images, at::full({3, 1, 4, 5}, (1.0f - 0.5f) / 0.25f)));
  ASSERT_EQ(test->black.size(), 1u);
  EXPECT_FLOAT_EQ(test->black[0], -2.0f);
}

TEST_F(TensorFileTest, Float32FourDimensionalWithInt32LabelsAndNumClasses) {
  absl::StatusOr<Dataset> train = LoadTensorFile(File("f32_nchw"), true);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->num_classes, 7);
  EXPECT_EQ(train->labels.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(train->labels, at::tensor({0, 1, 2, 3, 4}, at::kLong)));
  std::ifstream in(File("f32_train_x"), std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const at::Tensor raw = torch::jit::pickle_load(bytes).toTensor();
  const at::Tensor mean = at::tensor({0.1f, 0.2f, 0.3f}).view({1, 3, 1, 1});
  const at::Tensor std = at::tensor({1.0f, 2.0f, 4.0f}).view({1, 3, 1, 1});
  EXPECT_TRUE(at::allclose(train->images, (raw - mean) / std));
  ASSERT_EQ(train->black.size(), 3u);
  EXPECT_FLOAT_EQ(train->black[2], -0.3f / 4.0f);
}

TEST_F(TensorFileTest, OpensAsDataSourceThroughTheDatasetName) {
  absl::StatusOr<std::shared_ptr<const DataSource>> source =
      OpenDataset("tensors", File("f32_nchw"), DataOptions{});
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ((*source)->size(), 5);
  EXPECT_EQ((*source)->num_classes(), 7);
  EXPECT_EQ((*source)->example_shape(), (std::vector<int64_t>{3, 2, 2}));
  std::vector<float> out(12);
  absl::StatusOr<int64_t> label = (*source)->Example(3, 99, out.data());
  ASSERT_TRUE(label.ok()) << label.status();
  EXPECT_EQ(*label, 3);

  DataOptions sized;
  sized.image_size = 2;
  EXPECT_THAT(OpenDataset("tensors", File("f32_nchw"), sized).status().message(),
              HasSubstr("image_size"));
  EXPECT_THAT(std::string(OpenDataset("tensors", "", DataOptions{}).status().message()),
              AllOf(HasSubstr("tensors"), HasSubstr("data_dir")));
}

TEST_F(TensorFileTest, MissingFileIsNotFound) {
  absl::StatusOr<Dataset> d = LoadTensorFile(File("no_such_file"), true);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("no_such_file.pt"));
}

struct BadCase {
  const char* file;
  std::vector<const char*> message;  // substrings besides the file's name
};

TEST_F(TensorFileTest, EveryFaultNamesTheFileAndTheKey) {
  const BadCase cases[] = {
      {"missing_test_y", {"\"test_y\"", "missing", "train_x, train_y, test_x, test_y"}},
      {"unknown_key", {"\"train_labels\"", "unknown key", "allowed: train_x"}},
      {"x_float64", {"\"train_x\"", "dtype float64", "uint8", "float32"}},
      {"x_2d", {"\"train_x\"", "shape 6 x 20", "N x C x H x W"}},
      {"y_float", {"\"train_y\"", "dtype float32", "int64"}},
      {"y_wrong_length", {"\"train_y\"", "shape 5", "want 6"}},
      {"y_negative", {"\"test_y\"", "label -1", ">= 0"}},
      {"y_too_big", {"\"test_y\"", "label 3", "num_classes (3)"}},
      {"num_classes_1", {"\"num_classes\"", "value 1", ">= 2"}},
      {"test_x_other_shape", {"\"test_x\"", "1 x 4 x 4", "1 x 4 x 5"}},
      {"x_nan", {"\"test_x\"", "NaN"}},
      {"x_not_tensor", {"\"train_x\"", "must be a tensor"}},
      {"mean_without_std", {"\"std\"", "missing", "both or neither"}},
      {"std_zero", {"\"std\"", "value 0", "> 0"}},
      {"mean_two_entries", {"\"mean\"", "2 entries", "want 1 (the images have 1 channel)"}},
      {"ordered_dict", {"OrderedDict", "plain dict"}},
      {"a_list", {"not a dict", "train_x"}},
      {"not_torch", {"not a file written by torch.save"}},
  };
  for (const BadCase& c : cases) {
    for (bool train : {true, false}) {
      absl::StatusOr<Dataset> d = LoadTensorFile(File(c.file), train);
      ASSERT_FALSE(d.ok()) << c.file;
      EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
      const std::string message(d.status().message());
      EXPECT_THAT(message, HasSubstr(File(c.file))) << c.file;
      for (const char* part : c.message) EXPECT_THAT(message, HasSubstr(part)) << c.file;
    }
  }
}

}  // namespace
}  // namespace qsr
