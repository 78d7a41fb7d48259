// CIFAR-10 and CIFAR-100 in their binary ("for C programs") format, loaded into memory.
//
//   CIFAR-10:  data_batch_1.bin .. data_batch_5.bin (train), test_batch.bin (test); records of
//              1 label byte + 3072 pixel bytes (1024 red, 1024 green, 1024 blue; rows of 32).
//   CIFAR-100: train.bin, test.bin; records of 1 coarse label byte + 1 fine label byte + 3072
//              pixel bytes. The fine label (100 classes) is used.
// The files are looked up in `dir`, then in the folder the official tarball extracts to
// (`dir`/cifar-10-batches-bin, `dir`/cifar-100-binary). A file may hold any whole number of
// records (the official ones hold 10,000 or 50,000).
//
// Pixels are scaled to [0, 1] and normalised per channel with the training set's mean and std;
// Dataset::black holds each channel's normalised 0, for the padding of the random crop.
//
// Thread-safe (no shared state). Nothing throws.
#ifndef QSR_WORKER_DATA_CIFAR_H_
#define QSR_WORKER_DATA_CIFAR_H_

#include <string>

#include "absl/status/statusor.h"
#include "worker/data/data_source.h"

namespace qsr {

inline constexpr float kCifar10Mean[3] = {0.4914f, 0.4822f, 0.4465f};
inline constexpr float kCifar10Std[3] = {0.2470f, 0.2435f, 0.2616f};
inline constexpr float kCifar100Mean[3] = {0.5071f, 0.4865f, 0.4409f};
inline constexpr float kCifar100Std[3] = {0.2673f, 0.2564f, 0.2762f};

// N x 3 x 32 x 32 float32 images, int64 labels in [0, 10) / [0, 100). NotFound (listing the paths
// tried), DataLoss (a size that is not a whole number of records, a label out of range, a read
// error), Internal (a LibTorch error).
absl::StatusOr<Dataset> LoadCifar10(const std::string& dir, bool train);
absl::StatusOr<Dataset> LoadCifar100(const std::string& dir, bool train);

}  // namespace qsr

#endif  // QSR_WORKER_DATA_CIFAR_H_
