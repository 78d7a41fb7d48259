// RandAugment's 13 operations against Pillow (Debian's python3-pil), which composer's
// augmentation_primitives call: the test writes a fixed image, Python applies PIL's operation with
// a fixed magnitude, and the pixels are compared. Then the random part: composer's magnitude
// ranges per severity, depth, and reproducibility from the example key.
#include "worker/data/rand_augment.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

namespace fs = std::filesystem;

constexpr int kWidth = 37;
constexpr int kHeight = 29;

// A deterministic test image with edges, gradients and texture; values kept inside [12, 241] so
// autocontrast has something to stretch, with a few spikes so equalize's tables are uneven.
Image8 TestImage(int channels) {
  Image8 im;
  im.width = kWidth;
  im.height = kHeight;
  im.channels = channels;
  im.pixels.resize(static_cast<size_t>(kWidth) * kHeight * channels);
  uint64_t state = 12345;
  for (int y = 0; y < kHeight; ++y) {
    for (int x = 0; x < kWidth; ++x) {
      for (int c = 0; c < channels; ++c) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        const int noise = static_cast<int>((state >> 59) & 15);
        int v = 12 + (x * 5 + y * 3 + c * 40) % 200 + noise;
        if ((x / 6 + y / 5) % 3 == 0) v = 240 - v / 3;
        im.at(x, y, c) = static_cast<uint8_t>(std::clamp(v, 12, 241));
      }
    }
  }
  return im;
}

struct Case {
  std::string name;
  RandAugmentOp op;
  double value;
};

// Fixed magnitudes covering every operation, both signs, interpolation and extrapolation.
std::vector<Case> Cases() {
  using Op = RandAugmentOp;
  return {
      {"autocontrast", Op::kAutoContrast, 0},
      {"equalize", Op::kEqualize, 0},
      {"posterize1", Op::kPosterize, 1},
      {"posterize3", Op::kPosterize, 3},
      {"posterize4", Op::kPosterize, 4},
      {"solarize1", Op::kSolarize, 1},
      {"solarize100", Op::kSolarize, 100},
      {"solarize230", Op::kSolarize, 230},
      {"rotate17", Op::kRotate, 17},
      {"rotate-29", Op::kRotate, -29},
      {"rotate3", Op::kRotate, 3},
      {"rotate90", Op::kRotate, 90},
      {"rotate180", Op::kRotate, 180},
      {"shear_x0.27", Op::kShearX, 0.27},
      {"shear_x-0.13", Op::kShearX, -0.13},
      {"shear_y0.21", Op::kShearY, 0.21},
      {"shear_y-0.3", Op::kShearY, -0.3},
      {"translate_x7", Op::kTranslateX, 7},
      {"translate_x-4", Op::kTranslateX, -4},
      {"translate_y5", Op::kTranslateY, 5},
      {"translate_y-9", Op::kTranslateY, -9},
      {"color0.3", Op::kColor, 0.3},
      {"color2.7", Op::kColor, 2.7},
      {"color7.5", Op::kColor, 7.5},
      {"contrast0.45", Op::kContrast, 0.45},
      {"contrast3.3", Op::kContrast, 3.3},
      {"brightness0.62", Op::kBrightness, 0.62},
      {"brightness1.8", Op::kBrightness, 1.8},
      {"brightness6", Op::kBrightness, 6.0},
      {"sharpness0.2", Op::kSharpness, 0.2},
      {"sharpness4.9", Op::kSharpness, 4.9},
      {"sharpness0.93", Op::kSharpness, 0.93},
  };
}

// PIL's side: the calls composer's augmentation_primitives make, with the magnitude given.
constexpr char kPilScript[] = R"PY(
import sys
from PIL import Image, ImageEnhance, ImageOps
d, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
B = Image.BILINEAR
for mode in ("RGB", "L"):
    with open(f"{d}/in_{mode}.raw", "rb") as f:
        im = Image.frombytes(mode, (w, h), f.read())
    for line in open(f"{d}/cases.txt"):
        name, op, v = line.split()
        v = float(v)
        if op == "autocontrast": out = ImageOps.autocontrast(im)
        elif op == "equalize": out = ImageOps.equalize(im)
        elif op == "posterize": out = ImageOps.posterize(im, int(v))
        elif op == "solarize": out = ImageOps.solarize(im, int(v))
        elif op == "rotate": out = im.rotate(int(v), resample=B)
        elif op == "shear_x": out = im.transform(im.size, Image.AFFINE, (1, v, 0, 0, 1, 0), resample=B)
        elif op == "shear_y": out = im.transform(im.size, Image.AFFINE, (1, 0, 0, v, 1, 0), resample=B)
        elif op == "translate_x": out = im.transform(im.size, Image.AFFINE, (1, 0, int(v), 0, 1, 0), resample=B)
        elif op == "translate_y": out = im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, int(v)), resample=B)
        elif op == "color": out = ImageEnhance.Color(im).enhance(v)
        elif op == "contrast": out = ImageEnhance.Contrast(im).enhance(v)
        elif op == "brightness": out = ImageEnhance.Brightness(im).enhance(v)
        elif op == "sharpness": out = ImageEnhance.Sharpness(im).enhance(v)
        else: sys.exit("unknown op " + op)
        with open(f"{d}/out_{mode}_{name}.raw", "wb") as f:
            f.write(out.tobytes())
)PY";

std::string ModeName(int channels) { return channels == 1 ? "L" : "RGB"; }

class RandAugmentPilTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(
        absl::StrCat(::testing::TempDir(), "/rand_augment_pil_", std::to_string(getpid())));
    fs::create_directories(*dir_);
    for (int channels : {3, 1}) {
      const Image8 im = TestImage(channels);
      std::ofstream(absl::StrCat(*dir_, "/in_", ModeName(channels), ".raw"), std::ios::binary)
          .write(reinterpret_cast<const char*>(im.pixels.data()), im.pixels.size());
    }
    std::ofstream cases(absl::StrCat(*dir_, "/cases.txt"));
    for (const Case& c : Cases()) {
      cases << c.name << " " << RandAugmentOpName(c.op) << " " << absl::StrFormat("%.17g", c.value)
            << "\n";
    }
    cases.close();
    std::ofstream(absl::StrCat(*dir_, "/pil_ops.py")) << kPilScript;
    const std::string command = absl::StrCat(QSR_PYTHON, " ", *dir_, "/pil_ops.py ", *dir_, " ",
                                             kWidth, " ", kHeight, " 2>&1");
    ran_ = std::system(command.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete dir_;
  }

  // PIL's output for a case, or an empty vector when the file is missing.
  static std::vector<uint8_t> Reference(const std::string& name, int channels) {
    std::ifstream in(absl::StrCat(*dir_, "/out_", ModeName(channels), "_", name, ".raw"),
                     std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }

  static std::string* dir_;
  static bool ran_;
};
std::string* RandAugmentPilTest::dir_ = nullptr;
bool RandAugmentPilTest::ran_ = false;

// Every operation, RGB and L, equals PIL pixel for pixel. The tolerance is zero for all of them:
// the point operations use PIL's tables, and the resampling and blending repeat its arithmetic
// (double for the bilinear filter, float for blend and the SMOOTH kernel) with its truncations.
TEST_F(RandAugmentPilTest, EveryOperationMatchesPillowExactly) {
  ASSERT_TRUE(ran_) << "python3 with PIL (Debian: python3-pil) failed: " << QSR_PYTHON;
  std::set<RandAugmentOp> covered;
  for (int channels : {3, 1}) {
    for (const Case& c : Cases()) {
      SCOPED_TRACE(absl::StrCat(c.name, " ", ModeName(channels)));
      const std::vector<uint8_t> want = Reference(c.name, channels);
      Image8 im = TestImage(channels);
      ASSERT_EQ(want.size(), im.pixels.size());
      ApplyRandAugmentStep({c.op, c.value}, &im);
      int differing = 0, max_diff = 0, first = -1;
      for (size_t i = 0; i < want.size(); ++i) {
        const int d = std::abs(static_cast<int>(im.pixels[i]) - want[i]);
        if (d != 0 && first < 0) first = static_cast<int>(i);
        differing += d != 0;
        max_diff = std::max(max_diff, d);
      }
      EXPECT_EQ(differing, 0) << "max |diff| " << max_diff << ", first at byte " << first
                              << ": got " << int(im.pixels[std::max(first, 0)]) << ", PIL "
                              << int(want[std::max(first, 0)]);
      // The operation changed the image (so the comparison is not of two copies of the input).
      if (!(c.op == RandAugmentOp::kColor && channels == 1)) {
        EXPECT_NE(want, TestImage(channels).pixels);
      }
      covered.insert(c.op);
    }
  }
  EXPECT_EQ(covered.size(), static_cast<size_t>(kNumRandAugmentOps));
}

TEST(RandAugmentTest, OptionsAreValidated) {
  EXPECT_TRUE(ValidateRandAugmentOptions({10, 2}).ok());
  EXPECT_TRUE(ValidateRandAugmentOptions({1, 1}).ok());
  EXPECT_TRUE(ValidateRandAugmentOptions({5, kMaxRandAugmentDepth}).ok());
  for (const RandAugmentOptions& bad : std::vector<RandAugmentOptions>{
           {0, 2}, {11, 2}, {-3, 2}, {10, 0}, {10, -1}, {10, kMaxRandAugmentDepth + 1}}) {
    const absl::Status s = ValidateRandAugmentOptions(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad.severity << " " << bad.depth;
    EXPECT_NE(s.message().find(bad.severity < 1 || bad.severity > 10 ? "rand_aug_severity"
                                                                     : "rand_aug_depth"),
              std::string::npos)
        << s;
  }
}

// composer's magnitudes: the ranges each severity allows, every operation drawn about 1/13 of
// the time, and severity 10 reaching near the top of each range.
TEST(RandAugmentTest, DrawsFollowComposerRanges) {
  for (int severity : {1, 5, 10}) {
    SCOPED_TRACE(severity);
    AugmentRng rng(99 + severity);
    std::map<RandAugmentOp, int> count;
    std::map<RandAugmentOp, double> max_abs;
    std::map<RandAugmentOp, double> min_value;
    const int n = 26000;
    const int w = 224, h = 150;
    for (int i = 0; i < n; ++i) {
      const RandAugmentStep s = DrawRandAugmentStep(severity, w, h, rng);
      ++count[s.op];
      max_abs[s.op] = std::max(max_abs[s.op], std::abs(s.value));
      if (!min_value.count(s.op)) min_value[s.op] = s.value;
      min_value[s.op] = std::min(min_value[s.op], s.value);
      const double v = s.value, sv = severity;
      switch (s.op) {
        case RandAugmentOp::kPosterize:
          ASSERT_GE(v, 4 - static_cast<int>(sv * 0.4));
          ASSERT_LE(v, 4);
          break;
        case RandAugmentOp::kRotate:
          ASSERT_EQ(v, static_cast<int>(v));
          ASSERT_LT(std::abs(v), 3 * sv);
          break;
        case RandAugmentOp::kSolarize:
          ASSERT_GT(v, 256 - 25.6 * sv);
          ASSERT_LE(v, 254);
          break;
        case RandAugmentOp::kShearX:
        case RandAugmentOp::kShearY:
          ASSERT_LT(std::abs(v), 0.03 * sv);
          ASSERT_GE(std::abs(v), 0.003);
          break;
        case RandAugmentOp::kTranslateX:
          ASSERT_EQ(v, static_cast<int>(v));
          ASSERT_LT(std::abs(v), w / 3.0 * sv / 10);
          break;
        case RandAugmentOp::kTranslateY:
          ASSERT_LT(std::abs(v), h / 3.0 * sv / 10);
          break;
        case RandAugmentOp::kColor:
        case RandAugmentOp::kContrast:
        case RandAugmentOp::kSharpness:
          ASSERT_GE(v, 1 - 0.09 * sv);
          ASSERT_LE(v, std::max(1.0, sv));
          break;
        case RandAugmentOp::kBrightness:
          ASSERT_GE(v, 1 - 0.09 * sv);
          ASSERT_LE(v, std::max(1.0, 0.75 * sv));
          break;
        default:
          break;
      }
    }
    ASSERT_EQ(count.size(), static_cast<size_t>(kNumRandAugmentOps));
    for (const auto& [op, k] : count) {
      EXPECT_NEAR(k, n / 13.0, 0.1 * n / 13.0) << RandAugmentOpName(op);
    }
    if (severity == 10) {
      EXPECT_GE(max_abs[RandAugmentOp::kRotate], 28);
      EXPECT_EQ(min_value[RandAugmentOp::kPosterize], 1);
      EXPECT_LE(min_value[RandAugmentOp::kSolarize], 10);
      EXPECT_GE(max_abs[RandAugmentOp::kShearX], 0.29);
      EXPECT_GE(max_abs[RandAugmentOp::kTranslateX], 70);
      EXPECT_GE(max_abs[RandAugmentOp::kContrast], 9.5);
      EXPECT_LE(min_value[RandAugmentOp::kContrast], 0.15);
      EXPECT_GE(max_abs[RandAugmentOp::kBrightness], 7.0);
    }
    if (severity == 1) {
      EXPECT_EQ(max_abs[RandAugmentOp::kPosterize], 4);  // int(level * 0.4) = 0 below level 2.5
      EXPECT_LE(max_abs[RandAugmentOp::kRotate], 2);
    }
  }
}

// The augmentation is a function of the key: the same key gives the same image, different keys
// (almost always) different ones, and RandAugment is exactly `depth` draws and applications.
TEST(RandAugmentTest, DeterministicPerKeyAndDepthSteps) {
  const Image8 input = TestImage(3);
  const RandAugmentOptions options{10, 2};
  std::set<std::vector<uint8_t>> distinct;
  for (uint64_t key = 0; key < 16; ++key) {
    Image8 a = input, b = input;
    AugmentRng ra(key), rb(key);
    RandAugment(options, ra, &a);
    RandAugment(options, rb, &b);
    EXPECT_EQ(a.pixels, b.pixels) << key;
    distinct.insert(a.pixels);

    for (int depth : {1, 2, 3}) {
      Image8 manual = input, got = input;
      AugmentRng rm(key), rg(key);
      for (int i = 0; i < depth; ++i) {
        ApplyRandAugmentStep(DrawRandAugmentStep(10, input.width, input.height, rm), &manual);
      }
      RandAugment({10, depth}, rg, &got);
      EXPECT_EQ(manual.pixels, got.pixels) << key << " depth " << depth;
      EXPECT_EQ(rm.Next(), rg.Next()) << "depth " << depth << " must make exactly its draws";
    }
  }
  EXPECT_GE(distinct.size(), 14u);
}

// Higher severity changes images more: the mean absolute change over many keys grows with it.
TEST(RandAugmentTest, SeverityScalesTheChange) {
  const Image8 input = TestImage(3);
  auto mean_change = [&](int severity) {
    double total = 0;
    for (uint64_t key = 0; key < 300; ++key) {
      Image8 im = input;
      AugmentRng rng(key);
      RandAugment({severity, 2}, rng, &im);
      for (size_t i = 0; i < im.pixels.size(); ++i) {
        total += std::abs(static_cast<int>(im.pixels[i]) - input.pixels[i]);
      }
    }
    return total / (300.0 * input.pixels.size());
  };
  const double s1 = mean_change(1), s5 = mean_change(5), s10 = mean_change(10);
  EXPECT_LT(s1, s5);
  EXPECT_LT(s5, s10);
}

}  // namespace
}  // namespace qsr
