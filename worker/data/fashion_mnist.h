// Loading image-classification datasets into memory as tensors.
//
// Fashion-MNIST ships as four IDX files (big-endian; magic 2051 for images, 2049 for labels),
// gzip-compressed or not:
//   {train,t10k}-images-idx3-ubyte[.gz], {train,t10k}-labels-idx1-ubyte[.gz]
// Debian's `dataset-fashion-mnist` package installs them in /usr/share/datasets/fashion-mnist.
//
// The functions never throw; every error names the file and what is wrong with it.
// Thread-safe (no shared state).
#ifndef QSR_WORKER_DATA_FASHION_MNIST_H_
#define QSR_WORKER_DATA_FASHION_MNIST_H_

#include <ATen/core/Tensor.h>  // at::Tensor, the same type as torch::Tensor

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qsr {

inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;
inline constexpr char kFashionMnistDefaultDir[] = "/usr/share/datasets/fashion-mnist";

// An in-memory dataset on the CPU. Both tensors are contiguous.
struct Dataset {
  at::Tensor images;  // float32, N x C x H x W (Fashion-MNIST: N x 1 x 28 x 28, normalised)
  at::Tensor labels;  // int64, N, values in [0, num_classes)
  int64_t num_classes = 0;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

// Reads the train (60,000 examples) or test (10,000) split from `dir`. For each file it tries NAME,
// then NAME.gz. Pixels are scaled to [0, 1], then normalised: (x - 0.2860) / 0.3530.
// Errors: NotFound (lists the paths tried), DataLoss (bad magic, dimensions, counts, truncation,
// label out of range, corrupt gzip), Internal (a LibTorch error).
absl::StatusOr<Dataset> LoadFashionMnist(const std::string& dir, bool train);

// Names LoadDataset() accepts: {"fashion-mnist"}.
std::vector<std::string> KnownDatasets();

// The directory LoadDataset() uses when given none: $QSR_DATA_DIR when set and non-empty, else the
// dataset's system directory (fashion-mnist: /usr/share/datasets/fashion-mnist).
std::string DefaultDataDir(const std::string& name);

// Loads dataset `name` from `dir` (empty: DefaultDataDir(name)). InvalidArgument, listing the
// known datasets, for an unknown name.
absl::StatusOr<Dataset> LoadDataset(const std::string& name, const std::string& dir, bool train);

}  // namespace qsr

#endif  // QSR_WORKER_DATA_FASHION_MNIST_H_
