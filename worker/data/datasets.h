// The datasets the worker trains on, by name.
//
//   name            kind       train / test examples   classes  example shape
//   fashion-mnist   in memory  60,000 / 10,000         10       1 x 28 x 28
//   cifar10         in memory  50,000 / 10,000         10       3 x 32 x 32
//   cifar100        in memory  50,000 / 10,000         100      3 x 32 x 32
//   imagenet        JPEG tree  1,281,167 / 50,000 for  1000     3 x image_size x image_size
//                              ILSVRC-2012; any
//                              <dir>/{train,val}/<class>/*.jpg tree
//   tensors         in memory  any (a torch.save file) any      C x H x W of the file
// (see fashion_mnist.h, cifar.h, image_folder.h, tensor_file.h). "imagefolder" is the same loader
// as "imagenet", for other class-per-folder trees whose size the recipe cannot know.
//
// Thread-safe (no shared state besides reading the environment). Nothing throws.
#ifndef QSR_WORKER_DATA_DATASETS_H_
#define QSR_WORKER_DATA_DATASETS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/data_source.h"
#include "worker/data/rand_augment.h"

namespace qsr {

// Names LoadDataset() / OpenDataset() accept: {"fashion-mnist", "cifar10", "cifar100",
// "imagenet", "imagefolder", "tensors"}. For "tensors" the directory is the file's path.
std::vector<std::string> KnownDatasets();

// The directory used when none is given: $QSR_DATA_DIR when set and non-empty, else the
// dataset's system directory (fashion-mnist: /usr/share/datasets/fashion-mnist; the others have
// none: "").
std::string DefaultDataDir(const std::string& name);

// Loads an in-memory dataset (fashion-mnist, cifar10, cifar100, tensors) from `dir` (empty:
// DefaultDataDir(name)), without augmentation. InvalidArgument, listing the known datasets, for
// an unknown name; FailedPrecondition for a folder dataset (imagenet, imagefolder: use
// OpenDataset()).
absl::StatusOr<Dataset> LoadDataset(const std::string& name, const std::string& dir, bool train);

struct DataOptions {
  bool train = true;  // the training split (else test / val)
  // Apply the dataset's training augmentation (only to the training split): cifar10/100: random
  // crop 32 with padding 4 + flip; imagenet: RandomResizedCrop + flip (the validation split and
  // augment == false: resize + centre crop). fashion-mnist has none.
  bool augment = true;
  // Folder datasets: the side of the produced images (0: 224). In-memory datasets: 0 or their
  // own size (28 or 32; tensors: 0 only), else InvalidArgument.
  int64_t image_size = 0;
  // RandAugment after the training augmentation (only with train and augment): cifar10/100,
  // imagenet and imagefolder; InvalidArgument for the others.
  std::optional<RandAugmentOptions> rand_augment;
};

// Opens any known dataset as a DataSource for BatchLoader (the in-memory ones are loaded now; the
// folder ones only list their files). Errors as LoadDataset() and the loaders.
absl::StatusOr<std::shared_ptr<const DataSource>> OpenDataset(const std::string& name,
                                                              const std::string& dir,
                                                              const DataOptions& options);

}  // namespace qsr

#endif  // QSR_WORKER_DATA_DATASETS_H_
