// A dataset saved from Python as one file of tensors: the "tensors" dataset.
//
//   torch.save({"train_x": ..., "train_y": ..., "test_x": ..., "test_y": ...,
//               "num_classes": 10,                 # optional
//               "mean": [0.286], "std": [0.353]},  # optional, per channel
//              path)
//
//   train_x, test_x  uint8 (scaled to [0, 1]) or float32 (taken as they are, must be finite),
//                    N x C x H x W, or N x H x W (one channel); both splits with the same
//                    C x H x W and N >= 1.
//   train_y, test_y  int64 or int32, shape N (the split's N), values in [0, num_classes).
//   num_classes      an int >= 2; without it, max label + 1 over both splits (at least 2).
//   mean, std        a number, a list of numbers or a 1-d float tensor, with 1 or C entries; the
//                    images become (x - mean) / std per channel (after uint8 scaling). std > 0.
//                    Both or neither.
// The dict must be a plain dict (LibTorch's unpickler reads a collections.OrderedDict as None);
// tensors must be on the CPU when saved. Any other key is an error (a misspelt key would else be
// ignored silently). The examples are held in memory as float32, without augmentation.
//
// Thread-safe (no shared state). Nothing throws.
#ifndef QSR_WORKER_DATA_TENSOR_FILE_H_
#define QSR_WORKER_DATA_TENSOR_FILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/data_source.h"  // Dataset

namespace qsr {

// The keys LoadTensorFile() accepts, required ones first.
std::vector<std::string> TensorFileKeys();

// Reads the train or test split of the file at `path`. The whole file is read (and both splits
// checked, so that train and test agree on shape and classes whichever split is asked for).
// Errors name the file and, where one is at fault, the key and what is allowed: NotFound (no
// file), InvalidArgument (not a torch.save file of a dict, a missing or unknown key, a wrong dtype,
// shape, label or statistic).
absl::StatusOr<Dataset> LoadTensorFile(const std::string& path, bool train);

}  // namespace qsr

#endif  // QSR_WORKER_DATA_TENSOR_FILE_H_
