#include "worker/data/data_source.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

class TensorSource : public DataSource {
 public:
  TensorSource(at::Tensor images, at::Tensor labels, int64_t num_classes, std::vector<float> black,
               const TensorAugment& augment)
      : images_(std::move(images)),
        labels_(std::move(labels)),
        num_classes_(num_classes),
        black_(std::move(black)),
        augment_(augment),
        shape_(images_.sizes().slice(1).vec()),
        row_(images_.numel() / images_.size(0)),
        pixels_(images_.data_ptr<float>()),
        label_data_(labels_.data_ptr<int64_t>()) {}

  int64_t size() const override { return labels_.size(0); }
  int64_t num_classes() const override { return num_classes_; }
  std::vector<int64_t> example_shape() const override { return shape_; }
  std::string Describe() const override {
    std::string s = absl::StrCat(size(), " in-memory examples");
    if (augment_.pad > 0) absl::StrAppend(&s, ", random crop with padding ", augment_.pad);
    if (augment_.flip) absl::StrAppend(&s, ", flip");
    if (augment_.rand_augment) {
      absl::StrAppend(&s, ", RandAugment(severity ", augment_.rand_augment->severity, ", depth ",
                      augment_.rand_augment->depth, ")");
    }
    return s;
  }

  absl::StatusOr<int64_t> Example(int64_t index, uint64_t key, float* out) const override {
    if (augment_.rand_augment) return RandAugmented(index, key, out);
    const float* src = pixels_ + index * row_;
    if (augment_.pad == 0 && !augment_.flip) {
      std::memcpy(out, src, sizeof(float) * row_);
      return label_data_[index];
    }
    const CropFlip draw = DrawCropFlip(key, augment_);
    const int64_t channels = shape_[0], h = shape_[1], w = shape_[2];
    for (int64_t c = 0; c < channels; ++c) {
      const float fill = black_.empty() ? 0.0f : black_[c];
      const float* plane = src + c * h * w;
      for (int64_t y = 0; y < h; ++y) {
        float* dst = out + (c * h + y) * w;
        const int64_t sy = y + draw.dy - augment_.pad;
        if (sy < 0 || sy >= h) {
          for (int64_t x = 0; x < w; ++x) dst[x] = fill;
          continue;
        }
        const float* row = plane + sy * w;
        for (int64_t x = 0; x < w; ++x) {
          const int64_t sx = (draw.flip ? w - 1 - x : x) + draw.dx - augment_.pad;
          dst[x] = sx >= 0 && sx < w ? row[sx] : fill;
        }
      }
    }
    return label_data_[index];
  }

 private:
  // Crop and flip into 8-bit pixels, RandAugment, normalise (TensorAugment::rand_augment).
  absl::StatusOr<int64_t> RandAugmented(int64_t index, uint64_t key, float* out) const {
    const float* src = pixels_ + index * row_;
    AugmentRng rng(key);
    const CropFlip draw = DrawCropFlip(rng, augment_);
    const int channels = static_cast<int>(shape_[0]);
    const int h = static_cast<int>(shape_[1]), w = static_cast<int>(shape_[2]);
    const Normalization& norm = augment_.normalization;
    thread_local Image8 im;
    im.width = w;
    im.height = h;
    im.channels = channels;
    im.pixels.assign(static_cast<size_t>(w) * h * channels, 0);
    for (int c = 0; c < channels; ++c) {
      const float* plane = src + static_cast<int64_t>(c) * h * w;
      for (int y = 0; y < h; ++y) {
        const int64_t sy = y + draw.dy - augment_.pad;
        if (sy < 0 || sy >= h) continue;
        for (int x = 0; x < w; ++x) {
          const int64_t sx = (draw.flip ? w - 1 - x : x) + draw.dx - augment_.pad;
          if (sx < 0 || sx >= w) continue;
          const float v = (plane[sy * w + sx] * norm.std[c] + norm.mean[c]) * 255.0f;
          im.at(x, y, c) = static_cast<uint8_t>(std::clamp(std::nearbyint(v), 0.0f, 255.0f));
        }
      }
    }
    RandAugment(*augment_.rand_augment, rng, &im);
    for (int c = 0; c < channels; ++c) {
      // The loaders' normalisation: p / (255 std) - mean / std, in float.
      const float gain = 1.0f / (255.0f * norm.std[c]);
      const float bias = -norm.mean[c] / norm.std[c];
      float* dst = out + static_cast<int64_t>(c) * h * w;
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) dst[y * w + x] = im.at(x, y, c) * gain + bias;
      }
    }
    return label_data_[index];
  }

  const at::Tensor images_;  // contiguous float32
  const at::Tensor labels_;  // contiguous int64
  const int64_t num_classes_;
  const std::vector<float> black_;
  const TensorAugment augment_;
  const std::vector<int64_t> shape_;
  const int64_t row_;
  const float* const pixels_;
  const int64_t* const label_data_;
};

}  // namespace

CropFlip DrawCropFlip(uint64_t key, const TensorAugment& augment) {
  AugmentRng rng(key);
  return DrawCropFlip(rng, augment);
}

CropFlip DrawCropFlip(AugmentRng& rng, const TensorAugment& augment) {
  CropFlip d;
  if (augment.pad > 0) {
    d.dy = rng.UniformInt(0, 2 * augment.pad);
    d.dx = rng.UniformInt(0, 2 * augment.pad);
  }
  if (augment.flip) d.flip = rng.Bernoulli(0.5);
  return d;
}

absl::StatusOr<std::shared_ptr<const DataSource>> MakeTensorSource(const Dataset& data,
                                                                   const TensorAugment& augment) {
  if (!data.images.defined() || !data.labels.defined()) {
    return absl::InvalidArgumentError("dataset: no images or labels");
  }
  if (augment.pad < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset: augmentation padding must be >= 0, got ", augment.pad));
  }
  try {
    if (!data.images.device().is_cpu() || !data.labels.device().is_cpu()) {
      return absl::InvalidArgumentError("dataset: the tensors must be on the CPU");
    }
    if (data.labels.dim() != 1 || data.images.dim() < 1 ||
        data.images.size(0) != data.labels.size(0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset: images of shape ", c10::str(data.images.sizes()),
                       " do not match labels of shape ", c10::str(data.labels.sizes()),
                       " (want N x ... and N)"));
    }
    if (!at::isFloatingType(data.images.scalar_type()) || data.labels.scalar_type() != at::kLong) {
      return absl::InvalidArgumentError("dataset: images must be floating point and labels int64");
    }
    if (data.size() == 0) return absl::InvalidArgumentError("dataset: no examples");
    if (augment.rand_augment) {
      if (absl::Status s = ValidateRandAugmentOptions(*augment.rand_augment); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("dataset: ", s.message()));
      }
      if (data.images.dim() != 4 || (data.images.size(1) != 1 && data.images.size(1) != 3)) {
        return absl::InvalidArgumentError(
            absl::StrCat("dataset: RandAugment needs N x C x H x W images with C = 1 or 3, got "
                         "shape ",
                         c10::str(data.images.sizes())));
      }
      for (int c = 0; c < data.images.size(1); ++c) {
        if (!(augment.normalization.std[c] > 0)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "dataset: RandAugment needs the normalisation's std > 0 (channel ", c, ")"));
        }
      }
    }
    const bool spatial = augment.pad > 0 || augment.flip;
    if (spatial && data.images.dim() != 4) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset: crop and flip need N x C x H x W images, got shape ",
                       c10::str(data.images.sizes())));
    }
    if (!data.black.empty() &&
        (data.images.dim() < 2 || static_cast<int64_t>(data.black.size()) != data.images.size(1))) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset: ", data.black.size(), " black values for images of shape ",
                       c10::str(data.images.sizes()), " (want one per channel)"));
    }
    at::Tensor images = data.images.to(at::kFloat).contiguous();
    at::Tensor labels = data.labels.contiguous();
    return std::shared_ptr<const DataSource>(std::make_shared<TensorSource>(
        std::move(images), std::move(labels), data.num_classes, data.black, augment));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("dataset: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("dataset: ", e.what()));
  }
}

}  // namespace qsr
