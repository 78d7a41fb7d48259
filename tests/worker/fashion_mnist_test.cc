#include "worker/data/fashion_mnist.h"

#include <ATen/ATen.h>
#include <stdlib.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace qsr {
namespace {

namespace fs = std::filesystem;

void PutBigEndian32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(v >> 24);
  out.push_back((v >> 16) & 0xff);
  out.push_back((v >> 8) & 0xff);
  out.push_back(v & 0xff);
}

std::vector<uint8_t> ImagesIdx(uint32_t n, uint32_t rows = 28, uint32_t cols = 28,
                               uint32_t magic = 2051) {
  std::vector<uint8_t> out;
  PutBigEndian32(out, magic);
  PutBigEndian32(out, n);
  PutBigEndian32(out, rows);
  PutBigEndian32(out, cols);
  for (uint32_t i = 0; i < n * rows * cols; ++i) out.push_back(static_cast<uint8_t>(i * 7 + i / 5));
  return out;
}

std::vector<uint8_t> LabelsIdx(uint32_t n, uint32_t magic = 2049) {
  std::vector<uint8_t> out;
  PutBigEndian32(out, magic);
  PutBigEndian32(out, n);
  for (uint32_t i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>((i * 3) % 10));
  return out;
}

void WriteFile(const fs::path& path, const std::vector<uint8_t>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr) << path;
    ASSERT_EQ(gzwrite(f, bytes.data(), bytes.size()), static_cast<int>(bytes.size()));
    ASSERT_EQ(gzclose(f), Z_OK);
  } else {
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr) << path;
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    ASSERT_EQ(std::fclose(f), 0);
  }
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "qsr_idx_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Writes split-{images,labels} files under dir_, as NAME or NAME.gz.
  void Write(const std::string& split, const std::vector<uint8_t>& images,
             const std::vector<uint8_t>& labels, bool gzip) {
    const std::string ext = gzip ? ".gz" : "";
    WriteFile(dir_ / (split + "-images-idx3-ubyte" + ext), images, gzip);
    WriteFile(dir_ / (split + "-labels-idx1-ubyte" + ext), labels, gzip);
  }
  void ExpectLoadsTiny(bool train, uint32_t n) {
    absl::StatusOr<Dataset> data = LoadFashionMnist(dir_.string(), train);
    ASSERT_TRUE(data.ok()) << data.status();
    EXPECT_EQ(data->size(), n);
    EXPECT_EQ(data->num_classes, 10);
    ASSERT_EQ(data->images.sizes(), (at::IntArrayRef{n, 1, 28, 28}));
    EXPECT_EQ(data->images.scalar_type(), at::kFloat);
    EXPECT_TRUE(data->images.is_contiguous());
    EXPECT_EQ(data->labels.scalar_type(), at::kLong);
    const std::vector<uint8_t> raw = ImagesIdx(n);
    const float* px = data->images.data_ptr<float>();
    for (uint32_t i = 0; i < n * 784; i += 97) {
      const float want = (raw[16 + i] / 255.0f - kFashionMnistMean) / kFashionMnistStd;
      EXPECT_NEAR(px[i], want, 1e-5) << i;
    }
    for (uint32_t i = 0; i < n; ++i) EXPECT_EQ(data->labels[i].item<int64_t>(), (i * 3) % 10);
  }

  fs::path dir_;
};

TEST_F(IdxTest, LoadsPlainFiles) {
  Write("train", ImagesIdx(5), LabelsIdx(5), /*gzip=*/false);
  ExpectLoadsTiny(/*train=*/true, 5);
}

TEST_F(IdxTest, LoadsGzipFiles) {
  Write("t10k", ImagesIdx(3), LabelsIdx(3), /*gzip=*/true);
  ExpectLoadsTiny(/*train=*/false, 3);
}

TEST_F(IdxTest, PrefersPlainOverGzip) {
  Write("train", ImagesIdx(2), LabelsIdx(2), /*gzip=*/false);
  Write("train", ImagesIdx(4, 28, 28, 1234), LabelsIdx(4), /*gzip=*/true);  // would fail
  ExpectLoadsTiny(/*train=*/true, 2);
}

TEST_F(IdxTest, BadMagicNamesTheFile) {
  Write("train", ImagesIdx(2, 28, 28, /*magic=*/2049), LabelsIdx(2), false);
  absl::StatusOr<Dataset> data = LoadFashionMnist(dir_.string(), true);
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), absl::StatusCode::kDataLoss);
  const std::string msg(data.status().message());
  EXPECT_NE(msg.find((dir_ / "train-images-idx3-ubyte").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("magic"), std::string::npos) << msg;
}

TEST_F(IdxTest, BadLabelMagicNamesTheFile) {
  Write("t10k", ImagesIdx(2), LabelsIdx(2, /*magic=*/2051), true);
  absl::StatusOr<Dataset> data = LoadFashionMnist(dir_.string(), false);
  ASSERT_FALSE(data.ok());
  const std::string msg(data.status().message());
  EXPECT_NE(msg.find((dir_ / "t10k-labels-idx1-ubyte.gz").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("magic"), std::string::npos) << msg;
}

TEST_F(IdxTest, RejectsWrongDimensions) {
  Write("train", ImagesIdx(2, 32, 32), LabelsIdx(2), false);
  absl::StatusOr<Dataset> data = LoadFashionMnist(dir_.string(), true);
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.status().message().find("32x32"), absl::string_view::npos) << data.status();
}

TEST_F(IdxTest, RejectsCountMismatch) {
  Write("train", ImagesIdx(3), LabelsIdx(4), false);
  absl::StatusOr<Dataset> data = LoadFashionMnist(dir_.string(), true);
  ASSERT_FALSE(data.ok());
  const std::string msg(data.status().message());
  EXPECT_NE(msg.find("3 images"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4 labels"), std::string::npos) << msg;
}

TEST_F(IdxTest, RejectsTruncatedAndTrailingData) {
  std::vector<uint8_t> images = ImagesIdx(3);
  images.resize(images.size() - 10);
  Write("train", images, LabelsIdx(3), true);
  absl::StatusOr<Dataset> data = LoadFashionMnist(dir_.string(), true);
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.status().message().find("truncated"), absl::string_view::npos) << data.status();

  std::vector<uint8_t> labels = LabelsIdx(3);
  labels.push_back(1);
  Write("t10k", ImagesIdx(3), labels, false);
  data = LoadFashionMnist(dir_.string(), false);
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.status().message().find("trailing"), absl::string_view::npos) << data.status();
}

TEST_F(IdxTest, RejectsLabelOutOfRange) {
  std::vector<uint8_t> labels = LabelsIdx(3);
  labels.back() = 10;
  Write("train", ImagesIdx(3), labels, false);
  absl::StatusOr<Dataset> data = LoadFashionMnist(dir_.string(), true);
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.status().message().find("label 10 at index 2"), absl::string_view::npos)
      << data.status();
}

TEST_F(IdxTest, MissingFilesListPathsTriedAndThePackage) {
  absl::StatusOr<Dataset> data = LoadFashionMnist(dir_.string(), true);
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), absl::StatusCode::kNotFound);
  const std::string msg(data.status().message());
  const std::string base = (dir_ / "train-images-idx3-ubyte").string();
  EXPECT_NE(msg.find(base + " and " + base + ".gz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dataset-fashion-mnist"), std::string::npos) << msg;
}

TEST_F(IdxTest, LoadDatasetUsesQsrDataDir) {
  Write("train", ImagesIdx(2), LabelsIdx(2), true);
  ASSERT_EQ(setenv("QSR_DATA_DIR", dir_.c_str(), 1), 0);
  EXPECT_EQ(DefaultDataDir("fashion-mnist"), dir_.string());
  absl::StatusOr<Dataset> data = LoadDataset("fashion-mnist", "", true);
  unsetenv("QSR_DATA_DIR");
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->size(), 2);
  EXPECT_EQ(DefaultDataDir("fashion-mnist"), kFashionMnistDefaultDir);
}

TEST(LoadDatasetTest, UnknownNameListsKnownDatasets) {
  absl::StatusOr<Dataset> data = LoadDataset("cifar-10", "", true);
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(data.status().message().find("fashion-mnist"), absl::string_view::npos);
  EXPECT_NE(data.status().message().find("cifar-10"), absl::string_view::npos);
}

TEST(RealFashionMnistTest, LoadsBothSplits) {
  if (!fs::exists(kFashionMnistDefaultDir)) {
    FAIL() << kFashionMnistDefaultDir << " absent: install dataset-fashion-mnist";
  }
  absl::StatusOr<Dataset> train = LoadFashionMnist(kFashionMnistDefaultDir, true);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->size(), 60000);
  EXPECT_EQ(train->images.sizes(), (at::IntArrayRef{60000, 1, 28, 28}));
  // Normalised with the training set's own statistics.
  EXPECT_NEAR(train->images.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(train->images.std().item<double>(), 1.0, 0.01);
  const at::Tensor counts = at::bincount(train->labels);
  ASSERT_EQ(counts.numel(), 10);
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c].item<int64_t>(), 6000) << c;

  absl::StatusOr<Dataset> test = LoadDataset("fashion-mnist", kFashionMnistDefaultDir, false);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->size(), 10000);
  EXPECT_EQ(test->labels.min().item<int64_t>(), 0);
  EXPECT_EQ(test->labels.max().item<int64_t>(), 9);
}

}  // namespace
}  // namespace qsr
