#include "worker/data/datasets.h"

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/data/cifar.h"
#include "worker/data/fashion_mnist.h"
#include "worker/data/image_folder.h"
#include "worker/data/tensor_file.h"

namespace qsr {
namespace {

bool IsFolderDataset(const std::string& name) {
  return name == "imagenet" || name == "imagefolder";
}

}  // namespace

std::vector<std::string> KnownDatasets() {
  return {"fashion-mnist", "cifar10", "cifar100", "imagenet", "imagefolder", "tensors"};
}

std::string DefaultDataDir(const std::string& name) {
  const char* env = std::getenv("QSR_DATA_DIR");
  if (env != nullptr && env[0] != '\0') return env;
  if (name == "fashion-mnist") return kFashionMnistDefaultDir;
  return "";
}

absl::StatusOr<Dataset> LoadDataset(const std::string& name, const std::string& dir, bool train) {
  const std::string where = dir.empty() ? DefaultDataDir(name) : dir;
  if (name == "fashion-mnist") return LoadFashionMnist(where, train);
  if (name == "cifar10") return LoadCifar10(where, train);
  if (name == "cifar100") return LoadCifar100(where, train);
  if (name == "tensors") {
    if (where.empty()) {
      return absl::InvalidArgumentError(
          "dataset \"tensors\": no file (set the recipe's data_dir, the worker's --data-dir or "
          "QSR_DATA_DIR to the file written by torch.save)");
    }
    return LoadTensorFile(where, train);
  }
  if (IsFolderDataset(name)) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset \"", name,
                     "\" is a folder of JPEG files decoded per batch, not an in-memory "
                     "dataset: open it with OpenDataset()"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dataset \"", name, "\"; known datasets: ", absl::StrJoin(KnownDatasets(), ", ")));
}

absl::StatusOr<std::shared_ptr<const DataSource>> OpenDataset(const std::string& name,
                                                              const std::string& dir,
                                                              const DataOptions& options) {
  if (options.image_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset \"", name, "\": image_size must be >= 0, got ", options.image_size));
  }
  if (options.rand_augment && !IsFolderDataset(name) && name != "cifar10" && name != "cifar100") {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset \"", name,
        "\": RandAugment (strong_aug) works on 8-bit RGB images: cifar10, cifar100, imagenet, "
        "imagefolder"));
  }
  if (IsFolderDataset(name)) {
    const std::string where = dir.empty() ? DefaultDataDir(name) : dir;
    if (where.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset \"", name,
                       "\": no directory (set the recipe's data_dir, the worker's "
                       "--data-dir or QSR_DATA_DIR to the folder holding train/ and val/)"));
    }
    ImageFolderOptions folder;
    folder.image_size = options.image_size > 0 ? options.image_size : 224;
    folder.augment = options.train && options.augment;
    if (folder.augment) folder.rand_augment = options.rand_augment;
    return OpenImageFolder(where, options.train, folder);
  }
  absl::StatusOr<Dataset> data = LoadDataset(name, dir, options.train);
  if (!data.ok()) return data.status();
  const int64_t side = data->images.size(2);
  if (name == "tensors" && options.image_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset \"tensors\" takes its images as they are in the file; image_size ",
                     options.image_size, " is not supported for it (use 0)"));
  }
  if (options.image_size != 0 && options.image_size != side) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset \"", name, "\" has ", side, "x", side, " images; image_size ",
                     options.image_size, " is not supported for it (use 0 or ", side, ")"));
  }
  TensorAugment augment;
  const bool cifar = name == "cifar10" || name == "cifar100";
  if (options.train && options.augment && cifar) augment = kCifarTrainAugment;
  if (options.train && options.augment && options.rand_augment) {
    augment.rand_augment = options.rand_augment;
    const float* mean = name == "cifar10" ? kCifar10Mean : kCifar100Mean;
    const float* std = name == "cifar10" ? kCifar10Std : kCifar100Std;
    for (int c = 0; c < 3; ++c) {
      augment.normalization.mean[c] = mean[c];
      augment.normalization.std[c] = std[c];
    }
  }
  return MakeTensorSource(*data, augment);
}

}  // namespace qsr
