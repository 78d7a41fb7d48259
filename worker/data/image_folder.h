// ImageNet-style datasets: one folder per class of JPEG files, read and decoded lazily.
//
// Layout (torchvision's ImageFolder): <dir>/train/<class>/**/*.jpg and <dir>/val/<class>/**/*.jpg
// (extensions .jpg, .jpeg, .JPEG, ... case-insensitive). Classes are the sub-folders of
// <dir>/train sorted by name (byte order, as Python's sorted()), labelled 0, 1, ...; the
// validation split uses the training split's classes when <dir>/train exists, so its labels agree
// even if a class has no validation images. Files are sorted by path within a class, so example i
// is torchvision's example i for the same tree. Other image formats (.png, .webp, ...) are
// refused rather than skipped, so the example count never silently differs from torchvision's.
//
// Each example is read from disk and decoded when asked for (DataSource::Example()), on the
// calling thread: BatchLoader's `num_workers` decode threads run them in parallel.
//   training (augment):  RandomResizedCrop(image_size, scale (0.08, 1), ratio (3/4, 4/3)) + flip
//   evaluation:          Resize(floor(image_size / 0.875)) + CenterCrop(image_size)
// optionally followed in training by RandAugment on the 8-bit crop (ImageFolderOptions),
// then normalised with ImageNet's mean and std. See image_transforms.h.
//
// Thread-safe after construction (the file list is immutable). Nothing throws.
#ifndef QSR_WORKER_DATA_IMAGE_FOLDER_H_
#define QSR_WORKER_DATA_IMAGE_FOLDER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/data_source.h"
#include "worker/data/image_transforms.h"
#include "worker/data/rand_augment.h"

namespace qsr {

struct ImageFolderOptions {
  int64_t image_size = 224;  // side of the produced square images, >= 1
  bool augment = true;       // RandomResizedCrop + flip (true) or resize + centre crop (false)
  RandomResizedCropParams crop;
  // With augment: RandAugment on the cropped, flipped 8-bit image before normalisation
  // (rand_augment.h); its draws follow the crop's on the example key's generator.
  std::optional<RandAugmentOptions> rand_augment;
  Normalization normalization = kImageNetNormalization;
};

// The files of one split.
struct ImageFolderIndex {
  std::vector<std::string> classes;  // sorted class folder names; label = position
  std::vector<std::string> files;    // paths relative to the split folder, class by class
  std::vector<int32_t> labels;       // one per file
};

// Lists `split_dir`. With `classes` null, the classes are its sub-folders; otherwise the given
// names (sorted), and a sub-folder not among them is an error. NotFound if `split_dir` is not a
// directory; InvalidArgument if there are no classes, a class with no JPEG file (when classes is
// null), a class folder that is not in `classes`, or a non-JPEG image file.
absl::StatusOr<ImageFolderIndex> ScanImageFolder(const std::string& split_dir,
                                                 const std::vector<std::string>* classes);

// Opens <dir>/train (train) or <dir>/val (falling back to <dir>/test) as a DataSource producing
// float32 3 x image_size x image_size examples. Errors as ScanImageFolder(), plus InvalidArgument
// for image_size < 1. Scanning reads the directory tree only (no image is opened).
absl::StatusOr<std::shared_ptr<const DataSource>> OpenImageFolder(
    const std::string& dir, bool train, const ImageFolderOptions& options = ImageFolderOptions{});

}  // namespace qsr

#endif  // QSR_WORKER_DATA_IMAGE_FOLDER_H_
