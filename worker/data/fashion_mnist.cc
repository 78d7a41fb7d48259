#include "worker/data/fashion_mnist.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

constexpr uint32_t kImagesMagic = 2051;  // 0x00000803: unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 2049;  // 0x00000801: unsigned byte, 1 dimension
constexpr int64_t kRows = 28;
constexpr int64_t kCols = 28;
constexpr int64_t kNumClasses = 10;
// Refuse headers claiming more examples than this, instead of attempting a huge allocation.
constexpr uint32_t kMaxExamples = 1u << 24;

// A gzip (or plain: zlib reads both transparently) file opened for reading; closes on scope exit.
class GzReader {
 public:
  explicit GzReader(std::string path) : path_(std::move(path)) {}
  ~GzReader() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  const std::string& path() const { return path_; }

  absl::Status Open() {
    errno = 0;
    file_ = gzopen(path_.c_str(), "rb");
    if (file_ == nullptr) {
      const int err = errno;
      return absl::NotFoundError(
          absl::StrCat(path_, ": cannot open: ", err != 0 ? std::strerror(err) : "gzopen failed"));
    }
    gzbuffer(file_, 1 << 17);
    return absl::OkStatus();
  }

  // Reads exactly `n` bytes; DataLoss naming `what` on a short read or a zlib error.
  absl::Status ReadExactly(void* dst, int64_t n, const char* what) {
    char* out = static_cast<char*>(dst);
    int64_t done = 0;
    while (done < n) {
      const int64_t chunk_max = int64_t{1} << 30;
      const unsigned chunk = static_cast<unsigned>(n - done < chunk_max ? n - done : chunk_max);
      const int got = gzread(file_, out + done, chunk);
      if (got < 0) {
        int errnum = 0;
        const char* msg = gzerror(file_, &errnum);
        return absl::DataLossError(absl::StrCat(path_, ": read error in ", what, ": ",
                                                msg != nullptr ? msg : "unknown zlib error"));
      }
      if (got == 0) {
        return absl::DataLossError(absl::StrCat(path_, ": truncated: ", what, " needs ", n,
                                                " bytes, file ends after ", done));
      }
      done += got;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint32_t> ReadBigEndian32(const char* what) {
    unsigned char b[4];
    if (absl::Status s = ReadExactly(b, 4, what); !s.ok()) return s;
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
  }

  // DataLoss if any byte is left (a header that understates the count).
  absl::Status ExpectEnd() {
    char c;
    const int got = gzread(file_, &c, 1);
    if (got > 0) {
      return absl::DataLossError(
          absl::StrCat(path_, ": unexpected trailing data after the declared examples"));
    }
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(file_, &errnum);
      return absl::DataLossError(absl::StrCat(
          path_, ": read error at end of data: ", msg != nullptr ? msg : "unknown zlib error"));
    }
    return absl::OkStatus();
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

bool IsReadableFile(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  std::fclose(f);
  return true;
}

// Opens dir/name, falling back to dir/name.gz; NotFound listing both.
absl::StatusOr<std::unique_ptr<GzReader>> OpenIdx(const std::string& dir, const std::string& name) {
  const std::string base = dir.empty() ? name : absl::StrCat(dir, "/", name);
  const std::string candidates[] = {base, absl::StrCat(base, ".gz")};
  for (const std::string& path : candidates) {
    if (!IsReadableFile(path)) continue;
    auto reader = std::make_unique<GzReader>(path);
    if (absl::Status s = reader->Open(); !s.ok()) return s;
    return reader;
  }
  return absl::NotFoundError(absl::StrCat(
      "Fashion-MNIST file ", name, " not found; tried ", candidates[0], " and ", candidates[1],
      " (Debian's dataset-fashion-mnist package installs the files in ", kFashionMnistDefaultDir,
      "; set QSR_DATA_DIR or pass a directory to use another location)"));
}

// OpenIdx, then reads and checks the file's magic number: `expected` for an IDX `kind` file.
absl::StatusOr<std::unique_ptr<GzReader>> OpenIdxOf(const std::string& dir, const std::string& name,
                                                    uint32_t expected, const char* kind) {
  absl::StatusOr<std::unique_ptr<GzReader>> opened = OpenIdx(dir, name);
  if (!opened.ok()) return opened.status();
  GzReader* in = opened->get();
  absl::StatusOr<uint32_t> magic = in->ReadBigEndian32("the magic number");
  if (!magic.ok()) return magic.status();
  if (*magic != expected) {
    return absl::DataLossError(absl::StrCat(in->path(), ": bad magic number ", *magic, " (an IDX ",
                                            kind, " file has ", expected, ")"));
  }
  return opened;
}

absl::StatusOr<at::Tensor> ReadImages(const std::string& dir, const std::string& name) {
  absl::StatusOr<std::unique_ptr<GzReader>> opened = OpenIdxOf(dir, name, kImagesMagic, "image");
  if (!opened.ok()) return opened.status();
  GzReader* in = opened->get();
  uint32_t dims[3];
  const char* dim_names[3] = {"the image count", "the row count", "the column count"};
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<uint32_t> d = in->ReadBigEndian32(dim_names[i]);
    if (!d.ok()) return d.status();
    dims[i] = *d;
  }
  if (dims[1] != kRows || dims[2] != kCols) {
    return absl::DataLossError(absl::StrCat(in->path(), ": images are ", dims[1], "x", dims[2],
                                            ", expected ", kRows, "x", kCols));
  }
  if (dims[0] == 0 || dims[0] > kMaxExamples) {
    return absl::DataLossError(absl::StrCat(in->path(), ": implausible image count ", dims[0],
                                            " (expected 1 to ", kMaxExamples, ")"));
  }
  const int64_t n = dims[0];
  at::Tensor pixels = at::empty({n, 1, kRows, kCols}, at::kByte);
  if (absl::Status s =
          in->ReadExactly(pixels.data_ptr<uint8_t>(), n * kRows * kCols, "the pixel data");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = in->ExpectEnd(); !s.ok()) return s;
  return pixels;
}

absl::StatusOr<at::Tensor> ReadLabels(const std::string& dir, const std::string& name) {
  absl::StatusOr<std::unique_ptr<GzReader>> opened = OpenIdxOf(dir, name, kLabelsMagic, "label");
  if (!opened.ok()) return opened.status();
  GzReader* in = opened->get();
  absl::StatusOr<uint32_t> count = in->ReadBigEndian32("the label count");
  if (!count.ok()) return count.status();
  if (*count == 0 || *count > kMaxExamples) {
    return absl::DataLossError(absl::StrCat(in->path(), ": implausible label count ", *count,
                                            " (expected 1 to ", kMaxExamples, ")"));
  }
  const int64_t n = *count;
  std::vector<uint8_t> raw(n);
  if (absl::Status s = in->ReadExactly(raw.data(), n, "the labels"); !s.ok()) return s;
  if (absl::Status s = in->ExpectEnd(); !s.ok()) return s;
  at::Tensor labels = at::empty({n}, at::kLong);
  int64_t* dst = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (raw[i] >= kNumClasses) {
      return absl::DataLossError(absl::StrCat(in->path(), ": label ", static_cast<int>(raw[i]),
                                              " at index ", i, " is outside [0, ", kNumClasses,
                                              ")"));
    }
    dst[i] = raw[i];
  }
  return labels;
}

}  // namespace

absl::StatusOr<Dataset> LoadFashionMnist(const std::string& dir, bool train) {
  const std::string split = train ? "train" : "t10k";
  const std::string images_name = absl::StrCat(split, "-images-idx3-ubyte");
  const std::string labels_name = absl::StrCat(split, "-labels-idx1-ubyte");
  try {
    absl::StatusOr<at::Tensor> pixels = ReadImages(dir, images_name);
    if (!pixels.ok()) return pixels.status();
    absl::StatusOr<at::Tensor> labels = ReadLabels(dir, labels_name);
    if (!labels.ok()) return labels.status();
    if (pixels->size(0) != labels->size(0)) {
      return absl::DataLossError(absl::StrCat("Fashion-MNIST in ", dir, ": ", images_name, " has ",
                                              pixels->size(0), " images but ", labels_name, " has ",
                                              labels->size(0), " labels"));
    }
    Dataset data;
    data.images = pixels->to(at::kFloat)
                      .div_(255.0)
                      .sub_(kFashionMnistMean)
                      .div_(kFashionMnistStd)
                      .contiguous();
    data.labels = std::move(*labels);
    data.num_classes = kNumClasses;
    data.black = {-kFashionMnistMean / kFashionMnistStd};
    return data;
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("loading Fashion-MNIST from ", dir, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("loading Fashion-MNIST from ", dir, ": ", e.what()));
  }
}

}  // namespace qsr
