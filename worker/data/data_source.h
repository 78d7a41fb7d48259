// Where training and evaluation examples come from: an in-memory tensor dataset, or a lazily
// decoded file dataset, behind one interface that produces one transformed example at a time.
//
// A DataSource maps an index in [0, size()) and a 64-bit key to a float32 image of
// example_shape() and a label. The key seeds the example's random augmentation, so an example is a
// pure function of (index, key): a loader that derives keys from (seed, step, position in the
// global batch) with ExampleKey() gets the same batches whichever thread produces which example
// and however often a step is replayed. Sources without augmentation ignore the key.
//
// Thread-safe: every const method may be called concurrently (BatchLoader's decode threads do).
// Nothing throws.
#ifndef QSR_WORKER_DATA_DATA_SOURCE_H_
#define QSR_WORKER_DATA_DATA_SOURCE_H_

#include <ATen/core/Tensor.h>  // at::Tensor, the same type as torch::Tensor

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/data/image_transforms.h"  // Normalization
#include "worker/data/rand_augment.h"
#include "worker/data/sampler.h"  // ExampleKey, AugmentRng

namespace qsr {

// An in-memory dataset on the CPU. Both tensors are contiguous.
struct Dataset {
  at::Tensor images;  // float32, N x C x H x W (Fashion-MNIST: N x 1 x 28 x 28, normalised)
  at::Tensor labels;  // int64, N, values in [0, num_classes)
  int64_t num_classes = 0;
  // Per channel, the normalised value of a black (0) pixel: what augmentation pads with (empty:
  // 0 in every channel).
  std::vector<float> black;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

class DataSource {
 public:
  virtual ~DataSource() = default;

  virtual int64_t size() const = 0;
  virtual int64_t num_classes() const = 0;
  // The shape of one produced example, e.g. {3, 224, 224}.
  virtual std::vector<int64_t> example_shape() const = 0;
  // A short description for logs, e.g. "imagenet train (1281167 JPEG files, RandomResizedCrop 224
  // + flip)".
  virtual std::string Describe() const = 0;

  // Writes example `index` (REQUIRES: in [0, size())), transformed with the randomness of `key`,
  // to out[0, prod(example_shape())) as float32 CHW, and returns its label. Errors name the
  // example (for files: the path) and what is wrong: DataLoss for a corrupt or unreadable file,
  // Internal otherwise.
  virtual absl::StatusOr<int64_t> Example(int64_t index, uint64_t key, float* out) const = 0;
};

// Training augmentation of an in-memory image dataset.
struct TensorAugment {
  constexpr TensorAugment() = default;
  constexpr TensorAugment(int64_t pad_pixels, bool flip_images)
      : pad(pad_pixels), flip(flip_images) {}

  // Random crop of the original size from the image zero-padded (with Dataset::black) by `pad`
  // pixels on each side, as torchvision's RandomCrop(size, padding=pad); 0: no crop.
  int64_t pad = 0;
  bool flip = false;  // horizontal flip with probability 1/2
  // RandAugment after the crop and flip (rand_augment.h), on 8-bit pixels: each value v is mapped
  // back to round(255 (v std + mean)) with `normalization` (exact for images normalised from 8
  // bits, as CIFAR's are), augmented with the draws that follow the crop's and flip's on the key's
  // generator, and normalised again; padding is 0 (black). Needs N x C x H x W images, C 1 or 3.
  std::optional<RandAugmentOptions> rand_augment;
  Normalization normalization{};
};

// CIFAR's training augmentation: pad 4, crop 32, flip.
inline constexpr TensorAugment kCifarTrainAugment{4, true};

// A DataSource over an in-memory dataset (shared, not copied; made contiguous if it is not; must
// not be modified while the source lives). InvalidArgument if the dataset is not on the CPU, not
// floating point N x ... images with int64 N labels, or if `augment` crops, flips or
// RandAugments images that are not N x C x H x W (RandAugment: C 1 or 3, valid options), or if
// `black` has neither 0 nor C entries.
absl::StatusOr<std::shared_ptr<const DataSource>> MakeTensorSource(
    const Dataset& data, const TensorAugment& augment = TensorAugment{});

// Exposed for tests: the random crop offsets and flip that MakeTensorSource's augmentation draws
// for `key`. dy, dx in [0, 2 * pad] index the padded image.
struct CropFlip {
  int64_t dy = 0;
  int64_t dx = 0;
  bool flip = false;
};
CropFlip DrawCropFlip(uint64_t key, const TensorAugment& augment);
// The same draws from `rng` (DrawCropFlip(key, a) == DrawCropFlip(AugmentRng(key), a)).
CropFlip DrawCropFlip(AugmentRng& rng, const TensorAugment& augment);

}  // namespace qsr

#endif  // QSR_WORKER_DATA_DATA_SOURCE_H_
