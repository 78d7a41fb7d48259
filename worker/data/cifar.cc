#include "worker/data/cifar.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

constexpr int64_t kPixels = 3 * 32 * 32;

struct Format {
  const char* name;                // for messages
  const char* subdir;              // where the tarball extracts
  std::vector<std::string> train;  // file names
  std::vector<std::string> test;
  int64_t label_bytes;  // bytes before the pixels; the label used is the last of them
  int64_t num_classes;
  const float* mean;
  const float* std;
};

const Format& Cifar10() {
  static const Format* f = new Format{"CIFAR-10",
                                      "cifar-10-batches-bin",
                                      {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                       "data_batch_4.bin", "data_batch_5.bin"},
                                      {"test_batch.bin"},
                                      1,
                                      10,
                                      kCifar10Mean,
                                      kCifar10Std};
  return *f;
}

const Format& Cifar100() {
  static const Format* f =
      new Format{"CIFAR-100", "cifar-100-binary", {"train.bin"}, {"test.bin"}, 2,
                 100,         kCifar100Mean,      kCifar100Std};
  return *f;
}

// Reads a whole file; NotFound if it cannot be opened, DataLoss on a read error.
absl::Status ReadWholeFile(const std::string& path, std::vector<uint8_t>* out) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  out->clear();
  uint8_t chunk[1 << 16];
  while (true) {
    const size_t got = std::fread(chunk, 1, sizeof(chunk), f);
    out->insert(out->end(), chunk, chunk + got);
    if (got < sizeof(chunk)) break;
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return absl::OkStatus();
}

bool IsReadable(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  std::fclose(f);
  return true;
}

absl::StatusOr<Dataset> Load(const Format& format, const std::string& dir, bool train) {
  const std::vector<std::string>& names = train ? format.train : format.test;
  // The folder holding the first file is where all of them are read from.
  const std::string d = dir.empty() ? "." : dir;
  const std::string candidates[2] = {d, absl::StrCat(d, "/", format.subdir)};
  std::string base;
  for (const std::string& candidate : candidates) {
    if (IsReadable(absl::StrCat(candidate, "/", names[0]))) {
      base = candidate;
      break;
    }
  }
  if (base.empty()) {
    return absl::NotFoundError(absl::StrCat(
        format.name, " file ", names[0], " not found; tried ", candidates[0], "/", names[0],
        " and ", candidates[1], "/", names[0],
        " (download the binary version from https://www.cs.toronto.edu/~kriz/cifar.html and "
        "extract it; set QSR_DATA_DIR or the recipe's data_dir to the folder)"));
  }
  const int64_t record = format.label_bytes + kPixels;
  std::vector<std::vector<uint8_t>> files(names.size());
  int64_t n = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string path = absl::StrCat(base, "/", names[i]);
    if (absl::Status s = ReadWholeFile(path, &files[i]); !s.ok()) return s;
    const int64_t bytes = static_cast<int64_t>(files[i].size());
    if (bytes == 0 || bytes % record != 0) {
      return absl::DataLossError(absl::StrCat(path, ": ", bytes, " bytes is not a whole number of ",
                                              record, "-byte ", format.name, " records"));
    }
    n += bytes / record;
  }
  try {
    Dataset data;
    data.images = at::empty({n, 3, 32, 32}, at::kFloat);
    data.labels = at::empty({n}, at::kLong);
    data.num_classes = format.num_classes;
    float gain[3], bias[3];
    for (int c = 0; c < 3; ++c) {
      gain[c] = 1.0f / (255.0f * format.std[c]);
      bias[c] = -format.mean[c] / format.std[c];
      data.black.push_back(bias[c]);
    }
    float* x = data.images.data_ptr<float>();
    int64_t* y = data.labels.data_ptr<int64_t>();
    int64_t row = 0;
    for (size_t i = 0; i < files.size(); ++i) {
      const int64_t count = static_cast<int64_t>(files[i].size()) / record;
      for (int64_t r = 0; r < count; ++r, ++row) {
        const uint8_t* rec = files[i].data() + r * record;
        const int64_t label = rec[format.label_bytes - 1];
        if (label >= format.num_classes) {
          return absl::DataLossError(absl::StrCat(base, "/", names[i], ": record ", r,
                                                  " has label ", label, ", outside [0, ",
                                                  format.num_classes, ")"));
        }
        y[row] = label;
        const uint8_t* px = rec + format.label_bytes;
        float* dst = x + row * kPixels;
        for (int64_t k = 0; k < kPixels; ++k) {
          const int c = static_cast<int>(k / 1024);
          dst[k] = px[k] * gain[c] + bias[c];
        }
      }
    }
    return data;
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("loading ", format.name, " from ", base, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("loading ", format.name, " from ", base, ": ", e.what()));
  }
}

}  // namespace

absl::StatusOr<Dataset> LoadCifar10(const std::string& dir, bool train) {
  return Load(Cifar10(), dir, train);
}

absl::StatusOr<Dataset> LoadCifar100(const std::string& dir, bool train) {
  return Load(Cifar100(), dir, train);
}

}  // namespace qsr
