// Fashion-MNIST, loaded into memory as tensors.
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

#include <string>

#include "absl/status/statusor.h"
#include "worker/data/data_source.h"  // Dataset
#include "worker/data/datasets.h"     // LoadDataset(), which used to live here

namespace qsr {

inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;
inline constexpr char kFashionMnistDefaultDir[] = "/usr/share/datasets/fashion-mnist";

// Reads the train (60,000 examples) or test (10,000) split from `dir`. For each file it tries NAME,
// then NAME.gz. Pixels are scaled to [0, 1], then normalised: (x - 0.2860) / 0.3530.
// Errors: NotFound (lists the paths tried), DataLoss (bad magic, dimensions, counts, truncation,
// label out of range, corrupt gzip), Internal (a LibTorch error).
absl::StatusOr<Dataset> LoadFashionMnist(const std::string& dir, bool train);

}  // namespace qsr

#endif  // QSR_WORKER_DATA_FASHION_MNIST_H_
