// CIFAR-10/100 loading, the in-memory source's crop-and-flip augmentation, and mixup.
#include "worker/data/cifar.h"

#include <ATen/ATen.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/data/data_source.h"
#include "worker/data/datasets.h"
#include "worker/data/mixup.h"
#include "worker/data/rand_augment.h"

namespace qsr {
namespace {

namespace fs = std::filesystem;

uint8_t Pixel(int64_t record, int64_t k) {
  return static_cast<uint8_t>((record * 31 + k * 7) % 256);
}

// `n` records starting at record number `first`: [coarse label,] label, 3072 pixels.
std::vector<uint8_t> Records(int64_t first, int64_t n, bool cifar100) {
  std::vector<uint8_t> out;
  for (int64_t r = first; r < first + n; ++r) {
    if (cifar100) out.push_back(static_cast<uint8_t>(r % 20));  // coarse
    out.push_back(static_cast<uint8_t>(cifar100 ? (r * 7) % 100 : (r * 3) % 10));
    for (int64_t k = 0; k < 3072; ++k) out.push_back(Pixel(r, k));
  }
  return out;
}

void WriteFile(const fs::path& path, const std::vector<uint8_t>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  ASSERT_EQ(std::fclose(f), 0);
}

class CifarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "qsr_cifar_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // CIFAR-10 batches of 2, 3, 1, 2, 2 records (10 in all) and a test batch of 3, in `sub`.
  void WriteCifar10(const std::string& sub = "") {
    const fs::path d = sub.empty() ? dir_ : dir_ / sub;
    fs::create_directories(d);
    const int64_t sizes[5] = {2, 3, 1, 2, 2};
    int64_t first = 0;
    for (int i = 0; i < 5; ++i) {
      WriteFile(d / ("data_batch_" + std::to_string(i + 1) + ".bin"),
                Records(first, sizes[i], false));
      first += sizes[i];
    }
    WriteFile(d / "test_batch.bin", Records(100, 3, false));
  }
  void ExpectPixels(const Dataset& d, int64_t first, const float* mean, const float* std) {
    for (int64_t r = 0; r < d.size(); ++r) {
      for (int64_t k = 0; k < 3072; k += 101) {
        const int c = static_cast<int>(k / 1024);
        const float want = (Pixel(first + r, k) / 255.0f - mean[c]) / std[c];
        EXPECT_NEAR(d.images[r][c][(k % 1024) / 32][k % 32].item<float>(), want, 1e-5);
      }
    }
  }

  fs::path dir_;
};

TEST_F(CifarTest, LoadsCifar10) {
  WriteCifar10();
  absl::StatusOr<Dataset> train = LoadCifar10(dir_.string(), true);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->size(), 10);
  EXPECT_EQ(train->num_classes, 10);
  EXPECT_EQ(train->images.sizes(), (at::IntArrayRef{10, 3, 32, 32}));
  EXPECT_TRUE(train->images.is_contiguous());
  for (int64_t r = 0; r < 10; ++r) EXPECT_EQ(train->labels[r].item<int64_t>(), (r * 3) % 10);
  ExpectPixels(*train, 0, kCifar10Mean, kCifar10Std);
  ASSERT_EQ(train->black.size(), 3u);
  for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(train->black[c], -kCifar10Mean[c] / kCifar10Std[c]);

  absl::StatusOr<Dataset> test = LoadDataset("cifar10", dir_.string(), false);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->size(), 3);
  ExpectPixels(*test, 100, kCifar10Mean, kCifar10Std);
}

TEST_F(CifarTest, FindsTheTarballFolder) {
  WriteCifar10("cifar-10-batches-bin");
  absl::StatusOr<Dataset> train = LoadCifar10(dir_.string(), true);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->size(), 10);
}

TEST_F(CifarTest, LoadsCifar100FineLabels) {
  fs::create_directories(dir_ / "cifar-100-binary");
  WriteFile(dir_ / "cifar-100-binary" / "train.bin", Records(0, 7, true));
  WriteFile(dir_ / "cifar-100-binary" / "test.bin", Records(50, 2, true));
  absl::StatusOr<Dataset> train = LoadCifar100(dir_.string(), true);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->size(), 7);
  EXPECT_EQ(train->num_classes, 100);
  for (int64_t r = 0; r < 7; ++r) EXPECT_EQ(train->labels[r].item<int64_t>(), (r * 7) % 100);
  ExpectPixels(*train, 0, kCifar100Mean, kCifar100Std);
  absl::StatusOr<Dataset> test = LoadDataset("cifar100", dir_.string(), false);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->labels[1].item<int64_t>(), (51 * 7) % 100);
}

TEST_F(CifarTest, ReportsBadFiles) {
  absl::StatusOr<Dataset> missing = LoadCifar10(dir_.string(), true);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("cifar-10-batches-bin/data_batch_1.bin"),
            absl::string_view::npos)
      << missing.status();

  WriteCifar10();
  std::vector<uint8_t> cut = Records(0, 2, false);
  cut.pop_back();
  WriteFile(dir_ / "data_batch_3.bin", cut);
  absl::StatusOr<Dataset> truncated = LoadCifar10(dir_.string(), true);
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(truncated.status().message().find("data_batch_3.bin"), absl::string_view::npos);

  std::vector<uint8_t> bad_label = Records(0, 2, true);
  bad_label[3074 + 1] = 100;  // the second record's fine label
  WriteFile(dir_ / "train.bin", bad_label);
  absl::StatusOr<Dataset> out_of_range = LoadCifar100(dir_.string(), true);
  EXPECT_EQ(out_of_range.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(out_of_range.status().message().find("record 1"), absl::string_view::npos)
      << out_of_range.status();
}

TEST_F(CifarTest, OpenDatasetAugmentsOnlyTheTrainingSplit) {
  WriteCifar10();
  DataOptions options;
  absl::StatusOr<std::shared_ptr<const DataSource>> train =
      OpenDataset("cifar10", dir_.string(), options);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ((*train)->size(), 10);
  EXPECT_EQ((*train)->num_classes(), 10);
  EXPECT_EQ((*train)->example_shape(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_NE((*train)->Describe().find("padding 4"), std::string::npos) << (*train)->Describe();
  options.train = false;
  absl::StatusOr<std::shared_ptr<const DataSource>> test =
      OpenDataset("cifar10", dir_.string(), options);
  ASSERT_TRUE(test.ok()) << test.status();
  absl::StatusOr<Dataset> raw = LoadCifar10(dir_.string(), false);
  ASSERT_TRUE(raw.ok());
  std::vector<float> out(3072);
  for (uint64_t key : {1u, 2u, 3u}) {  // no augmentation: the key does not matter
    ASSERT_TRUE((*test)->Example(2, key, out.data()).ok());
    EXPECT_TRUE(at::equal(at::from_blob(out.data(), {3, 32, 32}), raw->images[2]));
  }
  options.image_size = 64;
  EXPECT_EQ(OpenDataset("cifar10", dir_.string(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// strong_aug on CIFAR: the 8-bit record bytes are recovered from the normalised tensor, padded
// and cropped, flipped, RandAugmented with the draws that follow the crop's, and normalised again
// exactly as the loader normalises; the test split is untouched.
TEST_F(CifarTest, RandAugmentRunsOnTheRecordBytesAfterCropAndFlip) {
  WriteCifar10();
  DataOptions options;
  options.rand_augment = RandAugmentOptions{10, 2};
  absl::StatusOr<std::shared_ptr<const DataSource>> train =
      OpenDataset("cifar10", dir_.string(), options);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_NE((*train)->Describe().find("RandAugment(severity 10, depth 2)"), std::string::npos)
      << (*train)->Describe();
  std::vector<float> out(3072), again(3072);
  int changed = 0;
  for (uint64_t key = 0; key < 24; ++key) {
    const int64_t record = key % 10;
    ASSERT_TRUE((*train)->Example(record, key, out.data()).ok());
    // The reference, from the bytes written: pad 4 with 0, crop, flip, RandAugment, normalise.
    AugmentRng rng(key);
    const CropFlip draw = DrawCropFlip(rng, kCifarTrainAugment);
    Image8 im;
    im.width = im.height = 32;
    im.channels = 3;
    im.pixels.assign(32 * 32 * 3, 0);
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 32; ++y) {
        for (int x = 0; x < 32; ++x) {
          const int64_t sy = y + draw.dy - 4, sx = (draw.flip ? 31 - x : x) + draw.dx - 4;
          if (sy >= 0 && sy < 32 && sx >= 0 && sx < 32) {
            im.at(x, y, c) = Pixel(record, c * 1024 + sy * 32 + sx);
          }
        }
      }
    }
    const std::vector<uint8_t> cropped = im.pixels;
    RandAugment({10, 2}, rng, &im);
    changed += im.pixels != cropped;
    for (int c = 0; c < 3; ++c) {
      const float gain = 1.0f / (255.0f * kCifar10Std[c]);
      const float bias = -kCifar10Mean[c] / kCifar10Std[c];
      for (int y = 0; y < 32; ++y) {
        for (int x = 0; x < 32; ++x) {
          ASSERT_EQ(out[c * 1024 + y * 32 + x], im.at(x, y, c) * gain + bias)
              << "key " << key << " channel " << c << " (" << x << ", " << y << ")";
        }
      }
    }
    ASSERT_TRUE((*train)->Example(record, key, again.data()).ok());
    EXPECT_EQ(out, again);
  }
  EXPECT_GE(changed, 18);  // RandAugment did something to most images

  options.train = false;  // the test split: no augmentation of any kind
  absl::StatusOr<std::shared_ptr<const DataSource>> test =
      OpenDataset("cifar10", dir_.string(), options);
  ASSERT_TRUE(test.ok()) << test.status();
  absl::StatusOr<Dataset> raw = LoadCifar10(dir_.string(), false);
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE((*test)->Example(1, 5, out.data()).ok());
  EXPECT_TRUE(at::equal(at::from_blob(out.data(), {3, 32, 32}), raw->images[1]));

  // Datasets that are not 8-bit RGB are refused; so are bad options.
  options.train = true;
  EXPECT_EQ(OpenDataset("fashion-mnist", dir_.string(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.rand_augment = RandAugmentOptions{11, 2};
  absl::Status bad = OpenDataset("cifar10", dir_.string(), options).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("rand_aug_severity"), std::string::npos) << bad;
}

// An image whose every value is distinct, and a distinct black per channel.
Dataset KnownImage(int64_t c, int64_t h, int64_t w) {
  Dataset d;
  d.images = at::arange(c * h * w, at::kFloat).reshape({1, c, h, w});
  d.labels = at::full({1}, 3, at::kLong);
  d.num_classes = 5;
  for (int64_t i = 0; i < c; ++i) d.black.push_back(-1.0f - i);
  return d;
}

TEST(TensorAugmentTest, CropAndFlipMatchPadThenSlice) {
  const Dataset d = KnownImage(3, 6, 5);
  const TensorAugment augment{2, true};
  absl::StatusOr<std::shared_ptr<const DataSource>> source = MakeTensorSource(d, augment);
  ASSERT_TRUE(source.ok()) << source.status();
  // torchvision: RandomCrop(size, padding=2) then RandomHorizontalFlip, written with tensor ops.
  at::Tensor padded = at::empty({3, 10, 9});
  for (int c = 0; c < 3; ++c) padded[c].fill_(d.black[c]);
  padded.slice(1, 2, 8).slice(2, 2, 7).copy_(d.images[0]);
  std::set<std::vector<int64_t>> seen;
  std::vector<float> out(3 * 6 * 5);
  for (uint64_t key = 0; key < 400; ++key) {
    const CropFlip draw = DrawCropFlip(key, augment);
    ASSERT_GE(draw.dy, 0);
    ASSERT_LE(draw.dy, 4);
    ASSERT_GE(draw.dx, 0);
    ASSERT_LE(draw.dx, 4);
    seen.insert({draw.dy, draw.dx, draw.flip});
    at::Tensor want = padded.slice(1, draw.dy, draw.dy + 6).slice(2, draw.dx, draw.dx + 5);
    if (draw.flip) want = want.flip({2});
    absl::StatusOr<int64_t> label = (*source)->Example(0, key, out.data());
    ASSERT_TRUE(label.ok());
    EXPECT_EQ(*label, 3);
    ASSERT_TRUE(at::equal(at::from_blob(out.data(), {3, 6, 5}), want)) << key;
  }
  EXPECT_EQ(seen.size(), 5u * 5u * 2u);  // every offset and both flips occur
}

TEST(TensorAugmentTest, DrawsAreDeterministicAndBalanced) {
  int flips = 0;
  std::vector<int> dx_counts(9);
  for (uint64_t i = 0; i < 9000; ++i) {
    const uint64_t key =
        ExampleKey(7, static_cast<int64_t>(i / 100), static_cast<int64_t>(i % 100));
    const CropFlip a = DrawCropFlip(key, kCifarTrainAugment);
    const CropFlip b = DrawCropFlip(key, kCifarTrainAugment);
    ASSERT_TRUE(a.dy == b.dy && a.dx == b.dx && a.flip == b.flip);
    flips += a.flip;
    ++dx_counts[a.dx];
  }
  EXPECT_NEAR(flips / 9000.0, 0.5, 0.03);
  for (int c : dx_counts) EXPECT_NEAR(c / 9000.0, 1.0 / 9, 0.02);
  EXPECT_NE(ExampleKey(1, 2, 3), ExampleKey(1, 3, 2));
  EXPECT_NE(ExampleKey(1, 2, 3), ExampleKey(2, 2, 3));
}

TEST(TensorAugmentTest, RejectsWhatItCannotAugment) {
  Dataset flat;
  flat.images = at::zeros({4, 12});
  flat.labels = at::zeros({4}, at::kLong);
  EXPECT_TRUE(MakeTensorSource(flat).ok());
  EXPECT_EQ(MakeTensorSource(flat, kCifarTrainAugment).status().code(),
            absl::StatusCode::kInvalidArgument);
  Dataset wrong_black = KnownImage(3, 4, 4);
  wrong_black.black = {0.0f};
  EXPECT_EQ(MakeTensorSource(wrong_black).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MixupTest, MixesImagesAndLabelsWithOnePermutation) {
  const at::Tensor x = at::randn({12, 3, 4, 4});
  const at::Tensor y = at::arange(12, at::kLong);
  absl::StatusOr<MixupBatch> m = Mixup(x, y, 0.2, 42);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GE(m->lambda, 0.0);
  EXPECT_LE(m->lambda, 1.0);
  ASSERT_EQ(m->perm.size(), 12u);
  std::vector<int64_t> sorted = m->perm;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_TRUE(at::equal(m->y_a, y));
  for (int64_t i = 0; i < 12; ++i) {
    EXPECT_EQ(m->y_b[i].item<int64_t>(), m->perm[i]);  // y = arange: y_b[i] = y[perm[i]]
    const at::Tensor want = x[i] * m->lambda + x[m->perm[i]] * (1 - m->lambda);
    EXPECT_TRUE(at::allclose(m->x[i], want, 1e-5, 1e-6)) << i;
  }
  // A pure function of the seed.
  absl::StatusOr<MixupBatch> again = Mixup(x, y, 0.2, 42);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->lambda, m->lambda);
  EXPECT_EQ(again->perm, m->perm);
  EXPECT_TRUE(at::equal(again->x, m->x));
  absl::StatusOr<MixupBatch> other = Mixup(x, y, 0.2, 43);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->lambda != m->lambda || other->perm != m->perm);
}

TEST(MixupTest, LambdaFollowsBeta) {
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); for a = 0.2 mass piles up near 0 and 1.
  for (double a : {0.2, 1.0, 4.0}) {
    double sum = 0, sum_sq = 0;
    int extreme = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
      AugmentRng rng(ExampleKey(9, i, 0));
      const double l = SampleBeta(a, a, rng);
      ASSERT_GE(l, 0.0);
      ASSERT_LE(l, 1.0);
      sum += l;
      sum_sq += l * l;
      extreme += l < 0.1 || l > 0.9;
    }
    const double mean = sum / n, var = sum_sq / n - mean * mean;
    EXPECT_NEAR(mean, 0.5, 0.01) << a;
    EXPECT_NEAR(var, 1.0 / (4 * (2 * a + 1)), 0.01) << a;
    if (a == 0.2) {
      EXPECT_GT(extreme, n / 2);  // P(l < 0.1 or l > 0.9) ~ 0.63 for Beta(.2, .2)
    }
  }
}

TEST(MixupTest, RejectsBadArguments) {
  const at::Tensor x = at::zeros({4, 2});
  const at::Tensor y = at::zeros({4}, at::kLong);
  EXPECT_EQ(Mixup(x, y, 0.0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Mixup(x, y.slice(0, 0, 3), 0.2, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Mixup(at::zeros({0, 2}), at::zeros({0}, at::kLong), 0.2, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qsr
