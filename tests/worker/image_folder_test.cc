// JPEG decoding, the ImageNet transforms and the class-per-folder dataset, on JPEG trees the tests
// write themselves.
#include "worker/data/image_folder.h"

#include <ATen/ATen.h>
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/data/batch_loader.h"
#include "worker/data/datasets.h"
#include "worker/data/image_transforms.h"
#include "worker/data/jpeg.h"
#include "worker/data/rand_augment.h"

namespace qsr {
namespace {

namespace fs = std::filesystem;

using PixelFn = std::function<void(int x, int y, uint8_t* rgb)>;

std::vector<uint8_t> Render(int w, int h, const PixelFn& fn) {
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) fn(x, y, &rgb[(static_cast<size_t>(y) * w + x) * 3]);
  }
  return rgb;
}

std::vector<uint8_t> Jpeg(int w, int h, const PixelFn& fn, int quality = 100) {
  const std::vector<uint8_t> rgb = Render(w, h, fn);
  absl::StatusOr<std::vector<uint8_t>> bytes = EncodeJpeg(rgb.data(), w, h, 3, quality);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::vector<uint8_t>{};
}

void WriteFile(const fs::path& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(path.parent_path());
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  ASSERT_EQ(std::fclose(f), 0);
}

// R = x * 255 / (w - 1), G = y * 255 / (h - 1), B = 100: a known value everywhere.
PixelFn Gradient(int w, int h) {
  return [w, h](int x, int y, uint8_t* p) {
    p[0] = static_cast<uint8_t>(std::lround(x * 255.0 / (w - 1)));
    p[1] = static_cast<uint8_t>(std::lround(y * 255.0 / (h - 1)));
    p[2] = 100;
  };
}

// The 0..255 value of channel c at output pixel (i, j) of a normalised CHW image.
double Unnormalise(const std::vector<float>& out, int64_t size, int c, int64_t j, int64_t i) {
  const Normalization& n = kImageNetNormalization;
  return (out[(c * size + j) * size + i] * n.std[c] + n.mean[c]) * 255.0;
}

// Checks that `out` (size x size) shows `box` of the Gradient(w, h) image, mirrored when `flip`:
// output pixel i samples the stored image around x = box.x0 + (i + 0.5) * box.width() / size.
void ExpectShowsGradient(const std::vector<float>& out, int64_t size, int w, int h, const Box& box,
                         bool flip, double tolerance) {
  double worst = 0;
  for (int64_t j = 1; j + 1 < size; ++j) {
    for (int64_t i = 1; i + 1 < size; ++i) {
      const int64_t src_i = flip ? size - 1 - i : i;
      const double cx = box.x0 + (src_i + 0.5) * box.width() / size - 0.5;
      const double cy = box.y0 + (j + 0.5) * box.height() / size - 0.5;
      worst = std::max(worst, std::fabs(Unnormalise(out, size, 0, j, i) - cx * 255.0 / (w - 1)));
      worst = std::max(worst, std::fabs(Unnormalise(out, size, 1, j, i) - cy * 255.0 / (h - 1)));
      worst = std::max(worst, std::fabs(Unnormalise(out, size, 2, j, i) - 100.0));
    }
  }
  EXPECT_LE(worst, tolerance) << "box " << box.x0 << "," << box.y0 << "," << box.x1 << "," << box.y1
                              << " flip " << flip;
}

TEST(JpegTest, RoundTripAndScaledCroppedDecode) {
  const int w = 256, h = 192;
  const std::vector<uint8_t> bytes = Jpeg(w, h, Gradient(w, h));
  JpegImage full;
  ASSERT_TRUE(DecodeJpeg(bytes.data(), bytes.size(), nullptr, &full).ok());
  EXPECT_EQ(full.width, w);
  EXPECT_EQ(full.height, h);
  EXPECT_EQ(full.stored_width, w);
  const std::vector<uint8_t> want = Render(w, h, Gradient(w, h));
  int worst = 0;
  for (size_t k = 0; k < want.size(); ++k) worst = std::max(worst, std::abs(full.rgb[k] - want[k]));
  EXPECT_LE(worst, 6);

  for (int denom : {1, 2, 4, 8}) {
    JpegImage whole, part;
    auto plan_whole = [&](int, int) { return JpegRegion{denom, 0, 0, 0, 0}; };
    auto plan_part = [&](int, int) { return JpegRegion{denom, 100, 50, 180, 120}; };
    ASSERT_TRUE(DecodeJpeg(bytes.data(), bytes.size(), plan_whole, &whole).ok());
    ASSERT_TRUE(DecodeJpeg(bytes.data(), bytes.size(), plan_part, &part).ok());
    EXPECT_EQ(whole.scaled_width, (w + denom - 1) / denom);
    EXPECT_EQ(part.scaled_width, whole.scaled_width);
    EXPECT_EQ(part.y0, 50 / denom);
    EXPECT_LE(part.x0, 100 / denom);  // aligned down to the JPEG's blocks
    EXPECT_GE(part.x0 + part.width, (180 + denom - 1) / denom);
    EXPECT_EQ(part.y0 + part.height, (120 + denom - 1) / denom);
    // The cropped decode equals the matching part of the whole decode.
    int diff = 0;
    for (int y = 0; y < part.height; ++y) {
      for (int x = 0; x < part.width * 3; ++x) {
        const int a = part.rgb[(static_cast<size_t>(y) * part.width) * 3 + x];
        const int b = whole.rgb[(static_cast<size_t>(y + part.y0) * whole.width + part.x0) * 3 + x];
        diff = std::max(diff, std::abs(a - b));
      }
    }
    EXPECT_LE(diff, 2) << "denom " << denom;
  }
}

TEST(JpegTest, GrayscaleBecomesRgbAndGarbageIsDataLoss) {
  std::vector<uint8_t> gray(40 * 30);
  for (size_t k = 0; k < gray.size(); ++k) gray[k] = static_cast<uint8_t>(k % 200);
  absl::StatusOr<std::vector<uint8_t>> bytes = EncodeJpeg(gray.data(), 40, 30, 1, 95);
  ASSERT_TRUE(bytes.ok());
  JpegImage image;
  ASSERT_TRUE(DecodeJpeg(bytes->data(), bytes->size(), nullptr, &image).ok());
  ASSERT_EQ(image.rgb.size(), 40u * 30 * 3);
  for (size_t k = 0; k < gray.size(); ++k) {
    EXPECT_EQ(image.rgb[k * 3], image.rgb[k * 3 + 1]);
    EXPECT_EQ(image.rgb[k * 3], image.rgb[k * 3 + 2]);
  }
  const std::vector<uint8_t> garbage = {0x89, 'P', 'N', 'G', 1, 2, 3, 4, 5, 6, 7, 8};
  absl::Status s = DecodeJpeg(garbage.data(), garbage.size(), nullptr, &image);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(DecodeJpeg(nullptr, 0, nullptr, &image).code(), absl::StatusCode::kDataLoss);
  auto bad_scale = [](int, int) { return JpegRegion{3, 0, 0, 0, 0}; };
  EXPECT_EQ(DecodeJpeg(bytes->data(), bytes->size(), bad_scale, &image).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeJpeg(gray.data(), 40, 30, 2).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TransformTest, RandomResizedCropBoxIsTorchvisions) {
  const RandomResizedCropParams params;
  double min_area = 1, max_area = 0;
  for (uint64_t key = 0; key < 2000; ++key) {
    AugmentRng rng(key);
    const Box b = RandomResizedCropBox(500, 375, params, rng);
    ASSERT_GE(b.x0, 0);
    ASSERT_GE(b.y0, 0);
    ASSERT_LE(b.x1, 500);
    ASSERT_LE(b.y1, 375);
    ASSERT_EQ(b.x0, std::floor(b.x0));
    ASSERT_EQ(b.x1, std::floor(b.x1));
    const double area = b.width() * b.height() / (500.0 * 375.0);
    min_area = std::min(min_area, area);
    max_area = std::max(max_area, area);
    const double ratio = b.width() / b.height();
    // Rounding to whole pixels bends the ratio a little.
    EXPECT_GT(ratio, 0.75 * 0.9);
    EXPECT_LT(ratio, 4.0 / 3.0 * 1.1);
  }
  EXPECT_LT(min_area, 0.1);
  EXPECT_GT(min_area, 0.07);
  EXPECT_GT(max_area, 0.8);
  // No draw fits a 1000 x 10 image with ratio <= 4/3 at area >= 8%: torchvision's fallback is
  // the centre crop with the ratio clamped, w = round(10 * 4/3) = 13.
  AugmentRng rng(1);
  const Box fallback = RandomResizedCropBox(1000, 10, params, rng);
  EXPECT_EQ(fallback.width(), 13);
  EXPECT_EQ(fallback.height(), 10);
  EXPECT_EQ(fallback.x0, (1000 - 13) / 2);
}

TEST(TransformTest, ResizeCenterCropBoxIsTorchvisions) {
  // Resize(256) of 500 x 375 gives 341 x 256; CenterCrop(224) starts at round(58.5) = 58 (half to
  // even, as Python) and round(16) = 16.
  const Box b = ResizeCenterCropBox(500, 375, 256, 224);
  EXPECT_DOUBLE_EQ(b.x0, 58 * 500.0 / 341);
  EXPECT_DOUBLE_EQ(b.x1, 282 * 500.0 / 341);
  EXPECT_DOUBLE_EQ(b.y0, 16 * 375.0 / 256);
  EXPECT_DOUBLE_EQ(b.y1, 240 * 375.0 / 256);
  const Box portrait = ResizeCenterCropBox(300, 400, 256, 224);  // 256 x 341
  EXPECT_DOUBLE_EQ(portrait.x0, 16 * 300.0 / 256);
  EXPECT_DOUBLE_EQ(portrait.y0, 58 * 400.0 / 341);
}

class ImageFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "qsr_image_folder_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // A small ImageNet-style tree; the class folders are created out of order.
  void WriteTree() {
    const std::vector<uint8_t> img = Jpeg(48, 40, Gradient(48, 40), 90);
    for (const std::string cls : {"zebra", "ant", "moth"}) {
      WriteFile(dir_ / "train" / cls / "b.jpg", img);
      WriteFile(dir_ / "train" / cls / "a.JPEG", img);
    }
    WriteFile(dir_ / "train" / "moth" / "sub" / "c.jpeg", img);
    WriteFile(dir_ / "train" / "moth" / "z.jpg", img);
    WriteFile(dir_ / "train" / "ant" / "notes.txt", {'h', 'i'});
    WriteFile(dir_ / "val" / "zebra" / "v1.jpg", img);
    WriteFile(dir_ / "val" / "ant" / "v2.jpg", img);
  }

  fs::path dir_;
};

TEST_F(ImageFolderTest, LabelsComeFromSortedFolderNames) {
  WriteTree();
  absl::StatusOr<ImageFolderIndex> train = ScanImageFolder((dir_ / "train").string(), nullptr);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->classes, (std::vector<std::string>{"ant", "moth", "zebra"}));
  // Within a class: files of the class folder first, then sub-folders (torchvision's walk).
  EXPECT_EQ(train->files, (std::vector<std::string>{"ant/a.JPEG", "ant/b.jpg", "moth/a.JPEG",
                                                    "moth/b.jpg", "moth/z.jpg", "moth/sub/c.jpeg",
                                                    "zebra/a.JPEG", "zebra/b.jpg"}));
  EXPECT_EQ(train->labels, (std::vector<int32_t>{0, 0, 1, 1, 1, 1, 2, 2}));

  // Validation labels use the training classes, although val has no "moth".
  absl::StatusOr<std::shared_ptr<const DataSource>> val =
      OpenImageFolder(dir_.string(), false, ImageFolderOptions{});
  ASSERT_TRUE(val.ok()) << val.status();
  EXPECT_EQ((*val)->size(), 2);
  EXPECT_EQ((*val)->num_classes(), 3);
  std::vector<float> out(3 * 224 * 224);
  absl::StatusOr<int64_t> label = (*val)->Example(0, 0, out.data());
  ASSERT_TRUE(label.ok()) << label.status();
  EXPECT_EQ(*label, 0);  // ant
  label = (*val)->Example(1, 0, out.data());
  ASSERT_TRUE(label.ok()) << label.status();
  EXPECT_EQ(*label, 2);  // zebra
}

TEST_F(ImageFolderTest, RefusesWhatItCannotRead) {
  EXPECT_EQ(OpenImageFolder(dir_.string(), true).status().code(), absl::StatusCode::kNotFound);
  WriteTree();
  WriteFile(dir_ / "val" / "wasp" / "v.jpg", Jpeg(8, 8, Gradient(8, 8)));
  absl::StatusOr<std::shared_ptr<const DataSource>> val = OpenImageFolder(dir_.string(), false);
  EXPECT_EQ(val.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(val.status().message().find("wasp"), absl::string_view::npos) << val.status();
  WriteFile(dir_ / "train" / "ant" / "x.png", {1, 2, 3});
  absl::StatusOr<std::shared_ptr<const DataSource>> train = OpenImageFolder(dir_.string(), true);
  EXPECT_EQ(train.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(train.status().message().find("ant/x.png"), absl::string_view::npos);
  fs::remove(dir_ / "train" / "ant" / "x.png");
  fs::create_directories(dir_ / "train" / "empty");
  EXPECT_EQ(OpenImageFolder(dir_.string(), true).status().code(),
            absl::StatusCode::kInvalidArgument);
  fs::remove(dir_ / "train" / "empty");
  // A corrupt file is found when it is decoded; the error names it.
  WriteFile(dir_ / "train" / "ant" / "a.JPEG", {0xff, 0xd8, 0xff, 0x00, 0x01});
  train = OpenImageFolder(dir_.string(), true);
  ASSERT_TRUE(train.ok()) << train.status();
  std::vector<float> out(3 * 224 * 224);
  absl::StatusOr<int64_t> label = (*train)->Example(0, 0, out.data());
  EXPECT_EQ(label.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(label.status().message().find("ant/a.JPEG"), absl::string_view::npos) << label.status();
}

TEST_F(ImageFolderTest, DatasetRegistryOpensFolders) {
  WriteTree();
  DataOptions options;
  options.image_size = 32;
  absl::StatusOr<std::shared_ptr<const DataSource>> train =
      OpenDataset("imagenet", dir_.string(), options);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ((*train)->size(), 8);
  EXPECT_EQ((*train)->example_shape(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_NE((*train)->Describe().find("RandomResizedCrop 32"), std::string::npos)
      << (*train)->Describe();
  options.train = false;
  absl::StatusOr<std::shared_ptr<const DataSource>> val =
      OpenDataset("imagefolder", dir_.string(), options);
  ASSERT_TRUE(val.ok()) << val.status();
  EXPECT_NE((*val)->Describe().find("resize 36 + centre crop 32"), std::string::npos)
      << (*val)->Describe();
  EXPECT_EQ(LoadDataset("imagenet", dir_.string(), true).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(OpenDataset("imagenet", "", options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageFolderTest, ValidationTransformShowsTheCentreCrop) {
  // 256 x 192 at full decode scale, and 1024 x 768, whose crop decodes at 1/8 scale.
  for (const auto& [w, h, size] :
       {std::tuple{256, 192, 112}, std::tuple{1024, 768, 64}, std::tuple{150, 200, 224}}) {
    WriteFile(dir_ / "val" / "c" / "img.jpg", Jpeg(w, h, Gradient(w, h)));
    ImageFolderOptions options;
    options.image_size = size;
    options.augment = false;
    absl::StatusOr<std::shared_ptr<const DataSource>> val =
        OpenImageFolder(dir_.string(), false, options);
    ASSERT_TRUE(val.ok()) << val.status();
    std::vector<float> out(3 * size * size);
    ASSERT_TRUE((*val)->Example(0, 123, out.data()).ok());
    const Box box = ResizeCenterCropBox(w, h, static_cast<int64_t>(size / 0.875), size);
    ExpectShowsGradient(out, size, w, h, box, /*flip=*/false, /*tolerance=*/5.0);
  }
}

TEST_F(ImageFolderTest, TrainingTransformShowsTheDrawnCropAndFlip) {
  const int w = 320, h = 240;
  WriteFile(dir_ / "train" / "c" / "img.jpg", Jpeg(w, h, Gradient(w, h)));
  ImageFolderOptions options;
  options.image_size = 64;
  absl::StatusOr<std::shared_ptr<const DataSource>> train =
      OpenImageFolder(dir_.string(), true, options);
  ASSERT_TRUE(train.ok()) << train.status();
  int flips = 0;
  std::vector<float> out(3 * 64 * 64), again(3 * 64 * 64);
  for (uint64_t key = 0; key < 12; ++key) {
    ASSERT_TRUE((*train)->Example(0, key, out.data()).ok());
    // The draws the source makes: the crop box, then the flip.
    AugmentRng rng(key);
    const Box box = RandomResizedCropBox(w, h, options.crop, rng);
    const bool flip = rng.Bernoulli(0.5);
    flips += flip;
    // The crop is resized on its own (as after PIL's crop), so only edge taps may differ.
    ExpectShowsGradient(out, 64, w, h, box, flip, /*tolerance=*/5.0 + 255.0 / w * 2);
    ASSERT_TRUE((*train)->Example(0, key, again.data()).ok());
    EXPECT_EQ(out, again) << "the same key must give the same example";
  }
  EXPECT_GT(flips, 0);
  EXPECT_LT(flips, 12);
}

// strong_aug on an image folder: the crop and flip are resampled to 8-bit pixels (the float
// resample rounded), RandAugmented with the draws that follow the crop's and the flip's, then
// normalised; evaluation is untouched.
TEST_F(ImageFolderTest, RandAugmentRunsOnTheEightBitCropAfterTheFlip) {
  const int w = 320, h = 240, size = 64;
  const std::vector<uint8_t> jpeg = Jpeg(w, h, Gradient(w, h));
  WriteFile(dir_ / "train" / "c" / "img.jpg", jpeg);
  WriteFile(dir_ / "val" / "c" / "img.jpg", jpeg);
  ImageFolderOptions plain;
  plain.image_size = size;
  ImageFolderOptions strong = plain;
  strong.rand_augment = RandAugmentOptions{10, 2};
  auto train_plain = OpenImageFolder(dir_.string(), true, plain);
  auto train_strong = OpenImageFolder(dir_.string(), true, strong);
  ASSERT_TRUE(train_plain.ok() && train_strong.ok());
  EXPECT_NE((*train_strong)->Describe().find("RandAugment(severity 10, depth 2)"),
            std::string::npos)
      << (*train_strong)->Describe();
  const int64_t n = 3 * size * size;
  std::vector<float> p(n), s(n), again(n), want(n);
  int changed = 0;
  for (uint64_t key = 0; key < 20; ++key) {
    ASSERT_TRUE((*train_plain)->Example(0, key, p.data()).ok());
    ASSERT_TRUE((*train_strong)->Example(0, key, s.data()).ok());
    // The reference: the same draws, decode, 8-bit crop, RandAugment, normalise.
    AugmentRng rng(key);
    Box box;
    bool flip = false;
    JpegImage decoded;
    ASSERT_TRUE(DecodeJpeg(
                    jpeg.data(), jpeg.size(),
                    [&](int sw, int sh) {
                      box = RandomResizedCropBox(sw, sh, plain.crop, rng);
                      flip = rng.Bernoulli(0.5);
                      return PlanResample(sw, sh, box, size, size, true);
                    },
                    &decoded)
                    .ok());
    Image8 im;
    im.width = im.height = size;
    im.channels = 3;
    im.pixels.resize(n);
    ResampleRgb8(decoded, box, true, size, size, flip, im.pixels.data());
    // The 8-bit stage is the float resample rounded: within half a level of the plain example.
    NormalizeRgb8(im.pixels.data(), size, size, plain.normalization, want.data());
    for (int64_t i = 0; i < n; ++i) {
      const float half_level = 0.5f / (255.0f * plain.normalization.std[i / (size * size)]);
      ASSERT_NEAR(want[i], p[i], half_level * 1.001f) << "key " << key << " value " << i;
    }
    const std::vector<uint8_t> cropped = im.pixels;
    RandAugment({10, 2}, rng, &im);
    changed += im.pixels != cropped;
    NormalizeRgb8(im.pixels.data(), size, size, plain.normalization, want.data());
    EXPECT_EQ(s, want) << "key " << key;
    ASSERT_TRUE((*train_strong)->Example(0, key, again.data()).ok());
    EXPECT_EQ(s, again) << "the same key must give the same example";
  }
  EXPECT_GE(changed, 15);

  plain.augment = strong.augment = false;  // evaluation's resize + centre crop
  auto val_plain = OpenImageFolder(dir_.string(), false, plain);
  auto val_strong = OpenImageFolder(dir_.string(), false, strong);
  ASSERT_TRUE(val_plain.ok() && val_strong.ok());
  ASSERT_TRUE((*val_plain)->Example(0, 3, p.data()).ok());
  ASSERT_TRUE((*val_strong)->Example(0, 3, s.data()).ok());
  EXPECT_EQ(p, s) << "evaluation must not be augmented";

  strong.augment = true;
  strong.rand_augment = RandAugmentOptions{10, 0};
  const absl::Status bad = OpenImageFolder(dir_.string(), true, strong).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("rand_aug_depth"), std::string::npos) << bad;
}

TEST_F(ImageFolderTest, DecodeThreadsDoNotChangeBatches) {
  // 24 images of different sizes and contents in 3 classes.
  for (int i = 0; i < 24; ++i) {
    const int w = 60 + 13 * i, h = 50 + 7 * (i % 5);
    WriteFile(dir_ / "train" / ("c" + std::to_string(i % 3)) / (std::to_string(i) + ".jpg"),
              Jpeg(
                  w, h,
                  [i](int x, int y, uint8_t* p) {
                    p[0] = static_cast<uint8_t>(x * i);
                    p[1] = static_cast<uint8_t>(y + 3 * i);
                    p[2] = static_cast<uint8_t>((x ^ y) + i);
                  },
                  85));
    WriteFile(dir_ / "val" / ("c" + std::to_string(i % 3)) / (std::to_string(i) + ".jpg"),
              Jpeg(w, h, Gradient(w, h), 85));
  }
  ImageFolderOptions options;
  options.image_size = 40;
  absl::StatusOr<std::shared_ptr<const DataSource>> train =
      OpenImageFolder(dir_.string(), true, options);
  ASSERT_TRUE(train.ok()) << train.status();
  SamplerConfig config;
  config.seed = 3;
  config.local_batch = 5;
  config.world = 2;
  config.rank = 1;
  auto batches = [&](int nw, int prefetch) {
    LoaderOptions lo;
    lo.num_workers = nw;
    lo.prefetch = prefetch;
    lo.augment_seed = 77;
    absl::StatusOr<std::unique_ptr<BatchLoader>> loader = BatchLoader::Create(*train, config, lo);
    EXPECT_TRUE(loader.ok()) << loader.status();
    std::vector<Batch> out;
    for (int s = 0; s < 6 && loader.ok(); ++s) {  // 2 steps per epoch: three epochs
      absl::StatusOr<Batch> b = (*loader)->Next();
      EXPECT_TRUE(b.ok()) << b.status();
      if (b.ok()) out.push_back(*b);
    }
    return out;
  };
  const std::vector<Batch> one = batches(1, 0);
  ASSERT_EQ(one.size(), 6u);
  EXPECT_EQ(one[0].x.sizes(), (at::IntArrayRef{5, 3, 40, 40}));
  for (const auto& [nw, prefetch] : {std::pair{2, 0}, std::pair{3, 2}, std::pair{4, 1}}) {
    const std::vector<Batch> many = batches(nw, prefetch);
    ASSERT_EQ(many.size(), one.size());
    for (size_t s = 0; s < one.size(); ++s) {
      EXPECT_TRUE(at::equal(many[s].x, one[s].x)) << "nw " << nw << " step " << s;
      EXPECT_TRUE(at::equal(many[s].y, one[s].y)) << "nw " << nw << " step " << s;
    }
  }
  // Evaluation order with 2 threads: the examples in index order, the last batch partial.
  options.augment = false;
  absl::StatusOr<std::shared_ptr<const DataSource>> val =
      OpenImageFolder(dir_.string(), false, options);
  ASSERT_TRUE(val.ok()) << val.status();
  LoaderOptions lo;
  lo.num_workers = 2;
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
      BatchLoader::CreateSequential(*val, 3, 24, 8, lo);
  ASSERT_TRUE(loader.ok()) << loader.status();
  int64_t index = 3;
  std::vector<float> want(3 * 40 * 40);
  for (int k = 0; k < 3; ++k) {
    absl::StatusOr<Batch> b = (*loader)->Next();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->x.size(0), k < 2 ? 8 : 5);
    for (int64_t j = 0; j < b->x.size(0); ++j, ++index) {
      absl::StatusOr<int64_t> label = (*val)->Example(index, 0, want.data());
      ASSERT_TRUE(label.ok());
      EXPECT_EQ(b->y[j].item<int64_t>(), *label);
      EXPECT_TRUE(at::equal(b->x[j], at::from_blob(want.data(), {3, 40, 40})));
    }
  }
  EXPECT_EQ((*loader)->Next().status().code(), absl::StatusCode::kOutOfRange);
}

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Decode throughput on a synthetic ImageNet-like tree (500 x 375 JPEGs). Not a correctness test:
// run with --gtest_also_run_disabled_tests --gtest_filter='*Throughput*'.
TEST_F(ImageFolderTest, DISABLED_DecodeThroughput) {
  const int n = 256, w = 500, h = 375;
  size_t bytes = 0;
  for (int i = 0; i < n; ++i) {
    const std::vector<uint8_t> jpeg = Jpeg(
        w, h,
        [i](int x, int y, uint8_t* p) {
          // Smooth shapes plus pixel noise, so files are about the size of ImageNet's (~110 KB).
          const uint32_t noise = (static_cast<uint32_t>(x) * 73856093u) ^
                                 (static_cast<uint32_t>(y) * 19349663u) ^
                                 (static_cast<uint32_t>(i) * 83492791u);
          for (int c = 0; c < 3; ++c) {
            const double v = 128 + 70 * std::sin(x / (9.0 + c + i % 7)) * std::cos(y / (13.0 + c)) +
                             static_cast<int>((noise >> (8 * c)) % 41) - 20;
            p[c] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
          }
        },
        90);
    bytes += jpeg.size();
    WriteFile(dir_ / "train" / ("c" + std::to_string(i % 4)) / (std::to_string(i) + ".jpg"), jpeg);
    WriteFile(dir_ / "val" / ("c" + std::to_string(i % 4)) / (std::to_string(i) + ".jpg"), jpeg);
  }
  std::cout << "synthetic tree: " << n << " JPEGs of " << w << "x" << h << ", mean "
            << bytes / n / 1024 << " KiB\n";
  for (bool train : {true, false}) {
    ImageFolderOptions options;
    options.augment = train;
    absl::StatusOr<std::shared_ptr<const DataSource>> source =
        OpenImageFolder(dir_.string(), train, options);
    ASSERT_TRUE(source.ok()) << source.status();
    for (int nw : {1, 2}) {
      LoaderOptions lo;
      lo.num_workers = nw;
      lo.prefetch = 0;  // time the production itself
      absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
          BatchLoader::CreateSequential(*source, 0, n, 32, lo);
      ASSERT_TRUE(loader.ok()) << loader.status();
      ASSERT_TRUE((*loader)->Next().ok());  // warm-up: page cache, buffers
      const auto start = std::chrono::steady_clock::now();
      const double cpu_start = CpuSeconds();
      int64_t images = 0;
      for (absl::StatusOr<Batch> b = (*loader)->Next(); b.ok(); b = (*loader)->Next()) {
        images += b->x.size(0);
      }
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double cpu = CpuSeconds() - cpu_start;
      // On a shared machine the wall-clock rate depends on the load; CPU time per image does not.
      std::cout << (train ? "train (RandomResizedCrop 224 + flip)" : "val (resize 256 + crop 224)")
                << ", nw=" << nw << ": " << images / s << " images/s wall, " << images / cpu
                << " images per CPU-second\n";
    }
  }
  // Reference: whole-image decodes only, one thread.
  std::vector<uint8_t> file;
  {
    FILE* f = std::fopen((dir_ / "train" / "c0" / "0.jpg").c_str(), "rb");
    ASSERT_NE(f, nullptr);
    file.resize(1 << 22);
    file.resize(std::fread(file.data(), 1, file.size(), f));
    std::fclose(f);
  }
  JpegImage image;
  double cpu = CpuSeconds();
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(DecodeJpeg(file.data(), file.size(), nullptr, &image).ok());
  }
  std::cout << "whole 500x375 decode: " << 1e3 * (CpuSeconds() - cpu) / 200 << " ms CPU\n";
  std::vector<float> out(3 * 224 * 224);
  const Box val_box = ResizeCenterCropBox(w, h, 256, 224);
  cpu = CpuSeconds();
  for (int i = 0; i < 200; ++i) {
    ResampleNormalize(image, val_box, false, 224, 224, false, kImageNetNormalization, out.data());
  }
  std::cout << "val resample 293x219 -> 224x224: " << 1e3 * (CpuSeconds() - cpu) / 200
            << " ms CPU\n";
  const Box crop_box{100, 50, 400, 300};
  cpu = CpuSeconds();
  for (int i = 0; i < 200; ++i) {
    ResampleNormalize(image, crop_box, true, 224, 224, true, kImageNetNormalization, out.data());
  }
  std::cout << "crop resample 300x250 -> 224x224: " << 1e3 * (CpuSeconds() - cpu) / 200
            << " ms CPU\n";
}

}  // namespace
}  // namespace qsr
