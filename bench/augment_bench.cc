// qsr-bench-augment: what RandAugment (strong_aug) costs the image-folder loader. One thread
// decodes training examples (read, JPEG decode of the crop, RandomResizedCrop + flip, normalise)
// from a folder of synthetic JPEGs the size of an average ImageNet image, alternately without and
// with RandAugment (severity 10, depth 2: the authors' ViT setting), in the same invocation, and
// reports images per CPU-second of the decoding thread (images/s per core) for both, their
// ratio, and each RandAugment operation's cost on one image_size crop.
//
//   qsr-bench-augment [--files 48] [--examples 300] [--passes 4] [--width 500] [--height 375]
//                     [--image-size 224] [--severity 10] [--depth 2]
// One JSON object per line on stdout.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/data/image_folder.h"
#include "worker/data/jpeg.h"
#include "worker/data/rand_augment.h"
#include "worker/data/sampler.h"

namespace qsr {
namespace {

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double WallSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// A photo-like test image: smooth shapes plus pixel noise (the recipe of image_folder_test's
// decode-throughput case): at 500 x 375 and quality 90 the files average about 75 KB, towards
// ImageNet's ~110 KB, so the decoder does typical work.
std::vector<uint8_t> SyntheticPhoto(int w, int h, uint32_t i) {
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const uint32_t noise = (static_cast<uint32_t>(x) * 73856093u) ^
                             (static_cast<uint32_t>(y) * 19349663u) ^ (i * 83492791u);
      for (int c = 0; c < 3; ++c) {
        const double v = 128 + 70 * std::sin(x / (9.0 + c + i % 7)) * std::cos(y / (13.0 + c)) +
                         static_cast<int>((noise >> (8 * c)) % 41) - 20;
        rgb[(static_cast<size_t>(y) * w + x) * 3 + c] =
            static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  }
  return rgb;
}

struct Timing {
  double cpu = 0;
  double wall = 0;
  int64_t images = 0;
};

int Main(int argc, char** argv) {
  int files = 48, examples = 300, passes = 4, width = 500, height = 375, image_size = 224;
  int severity = 10, depth = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    int* target = flag == "--files"        ? &files
                  : flag == "--examples"   ? &examples
                  : flag == "--passes"     ? &passes
                  : flag == "--width"      ? &width
                  : flag == "--height"     ? &height
                  : flag == "--image-size" ? &image_size
                  : flag == "--severity"   ? &severity
                  : flag == "--depth"      ? &depth
                                           : nullptr;
    if (target == nullptr || i + 1 >= argc || !absl::SimpleAtoi(argv[i + 1], target) ||
        *target < 1) {
      std::fprintf(stderr,
                   "qsr-bench-augment: bad argument %s (flags: --files --examples --passes "
                   "--width --height --image-size --severity --depth, each a positive integer)\n",
                   argv[i]);
      return 2;
    }
    ++i;
  }
  const RandAugmentOptions ra{severity, depth};
  if (absl::Status s = ValidateRandAugmentOptions(ra); !s.ok()) {
    std::fprintf(stderr, "qsr-bench-augment: %s\n", std::string(s.message()).c_str());
    return 2;
  }

  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/qsr-bench-augment.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("qsr-bench-augment: mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  int64_t jpeg_bytes = 0;
  for (int i = 0; i < files; ++i) {
    const std::string class_dir = absl::StrCat(dir, "/train/c", i % 2);
    fs::create_directories(class_dir);
    auto jpeg = EncodeJpeg(SyntheticPhoto(width, height, 1000 + i).data(), width, height, 3, 90);
    if (!jpeg.ok()) {
      std::fprintf(stderr, "qsr-bench-augment: %s\n", std::string(jpeg.status().message()).c_str());
      return 1;
    }
    jpeg_bytes += static_cast<int64_t>(jpeg->size());
    std::ofstream(absl::StrCat(class_dir, "/img", i, ".jpg"), std::ios::binary)
        .write(reinterpret_cast<const char*>(jpeg->data()), jpeg->size());
  }

  ImageFolderOptions plain;
  plain.image_size = image_size;
  ImageFolderOptions strong = plain;
  strong.rand_augment = ra;
  auto off = OpenImageFolder(dir, /*train=*/true, plain);
  auto on = OpenImageFolder(dir, /*train=*/true, strong);
  if (!off.ok() || !on.ok()) {
    std::fprintf(stderr, "qsr-bench-augment: %s\n",
                 std::string((off.ok() ? on.status() : off.status()).message()).c_str());
    return 1;
  }
  std::vector<float> out(static_cast<size_t>(3) * image_size * image_size);
  const int64_t n = (*off)->size();
  auto run = [&](const DataSource& source, int pass, int count, Timing* t) -> bool {
    const double c0 = ThreadCpuSeconds(), w0 = WallSeconds();
    for (int i = 0; i < count; ++i) {
      auto label = source.Example(i % n, ExampleKey(7, pass, i), out.data());
      if (!label.ok()) {
        std::fprintf(stderr, "qsr-bench-augment: %s\n",
                     std::string(label.status().message()).c_str());
        return false;
      }
    }
    t->cpu += ThreadCpuSeconds() - c0;
    t->wall += WallSeconds() - w0;
    t->images += count;
    return true;
  };
  Timing warm, t_off, t_on;
  if (!run(**off, 1000, 20, &warm) || !run(**on, 1000, 20, &warm)) return 1;
  // Alternating passes, so drift in the machine's load touches both modes alike.
  for (int p = 0; p < passes; ++p) {
    if (!run(**off, p, examples, &t_off) || !run(**on, p, examples, &t_on)) return 1;
  }
  const double rate_off = t_off.images / t_off.cpu, rate_on = t_on.images / t_on.cpu;
  const std::string common =
      absl::StrFormat(R"("jpeg": "%dx%d", "jpeg_kb": %.1f, "files": %d, "image_size": %d)", width,
                      height, jpeg_bytes / 1024.0 / files, files, image_size);
  std::printf(
      R"({"bench": "augment", "mode": "decode", %s, "images": %lld, "cpu_s": %.4f, "wall_s": %.4f, "images_per_s_per_core": %.1f})"
      "\n",
      common.c_str(), static_cast<long long>(t_off.images), t_off.cpu, t_off.wall, rate_off);
  std::printf(
      R"({"bench": "augment", "mode": "decode+randaugment", %s, "severity": %d, "depth": %d, "images": %lld, "cpu_s": %.4f, "wall_s": %.4f, "images_per_s_per_core": %.1f, "ratio_vs_decode": %.4f, "randaugment_share_of_decode_time": %.4f})"
      "\n",
      common.c_str(), severity, depth, static_cast<long long>(t_on.images), t_on.cpu, t_on.wall,
      rate_on, rate_on / rate_off, (t_on.cpu / t_on.images) / (t_off.cpu / t_off.images) - 1.0);

  // Each operation alone, at a fixed severity-10 draw, on image_size x image_size crops.
  Image8 base;
  base.width = base.height = image_size;
  base.channels = 3;
  base.pixels = SyntheticPhoto(image_size, image_size, 5);
  const int reps = std::max(20, examples / 2);
  for (int op = 0; op < kNumRandAugmentOps; ++op) {
    AugmentRng rng(op);
    RandAugmentStep step;
    do {
      step = DrawRandAugmentStep(severity, image_size, image_size, rng);
    } while (static_cast<int>(step.op) != op);
    Image8 im = base;
    const double c0 = ThreadCpuSeconds();
    for (int r = 0; r < reps; ++r) {
      im.pixels = base.pixels;
      ApplyRandAugmentStep(step, &im);
    }
    const double us = (ThreadCpuSeconds() - c0) / reps * 1e6;
    std::printf(
        R"({"bench": "augment_op", "op": "%s", "value": %.4f, "image_size": %d, "us_per_image": %.1f})"
        "\n",
        std::string(RandAugmentOpName(step.op)).c_str(), step.value, image_size, us);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}

}  // namespace
}  // namespace qsr

int main(int argc, char** argv) { return qsr::Main(argc, argv); }
