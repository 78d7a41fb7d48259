// RandAugment as MosaicML composer's randaugment_image applies it with augmentation_set "all" (the
// ViT training of the QSR paper's code: `--strong-aug 1`, severity 10, depth 2), on decoded 8-bit
// images in the loader threads, without Python or PIL.
//
// For each image, `depth` times: pick one of the 13 operations uniformly at random and apply it
// (always: composer has no per-operation probability) with a magnitude drawn afresh from the
// severity, exactly as composer's augmentation_primitives draw it:
//   level ~ U(0.1, severity)                       (_sample_level)
//   autocontrast, equalize                          no parameter
//   posterize    bits = 4 - int(level * 4 / 10)
//   rotate       degrees = int(level * 30 / 10), negated with probability 1/2
//   solarize     threshold = 256 - int(level * 256 / 10)
//   shear_x/y    s = level * 0.3 / 10, negated with probability 1/2
//   translate_x  int(level * (width / 3) / 10) pixels, negated with probability 1/2
//   translate_y  int(level * (height / 3) / 10) pixels, negated with probability 1/2
//   color, contrast, sharpness, brightness: factor ~ U(1, severity) with probability 1/2, else
//                U(1 - 0.09 severity, 1) (_symmetric_sample); brightness then scales a factor
//                above 1 by 0.75.
// The draws come from AugmentRng instead of numpy's global generator, so an example's
// augmentation is a pure function of its key (runs reproduce and resume exactly); the
// distribution is composer's.
//
// Each operation reproduces Pillow's (9.x) integer results for 8-bit "L" (1 channel) and "RGB"
// (3 channel) images: the same look-up tables, the same float/double arithmetic and truncations.
// Geometric operations resample bilinearly and fill with 0 outside the source, as
// Image.transform(AFFINE, BILINEAR) and Image.rotate(BILINEAR) do with the default fill.
//
// Pure functions on the image passed in; thread-safe (each thread keeps its own scratch buffer).
// Nothing throws besides std::bad_alloc.
#ifndef QSR_WORKER_DATA_RAND_AUGMENT_H_
#define QSR_WORKER_DATA_RAND_AUGMENT_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "worker/data/sampler.h"  // AugmentRng

namespace qsr {

// An 8-bit image, interleaved (H x W x C), rows packed. channels: 1 (PIL "L") or 3 ("RGB").
struct Image8 {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;  // height * width * channels

  uint8_t& at(int x, int y, int c) {
    return pixels[(static_cast<size_t>(y) * width + x) * channels + c];
  }
  uint8_t at(int x, int y, int c) const {
    return pixels[(static_cast<size_t>(y) * width + x) * channels + c];
  }
};

// The operations, each Pillow's; REQUIRES for all: width, height >= 1, channels 1 or 3, and
// pixels.size() == width * height * channels.
// ImageOps.autocontrast(im): each channel's [min, max] stretched to [0, 255] (cutoff 0).
void AutoContrast(Image8* im);
// ImageOps.equalize(im): per-channel histogram equalisation.
void Equalize(Image8* im);
// ImageOps.posterize(im, bits): keep the top `bits` (1..8) bits of every value.
void Posterize(Image8* im, int bits);
// ImageOps.solarize(im, threshold): values >= threshold become 255 - value.
void Solarize(Image8* im, int threshold);
// im.transform(im.size, AFFINE, m, BILINEAR): output pixel (x, y) samples the input at
// (m0 (x+.5) + m1 (y+.5) + m2, m3 (x+.5) + m4 (y+.5) + m5); samples outside the image are 0.
void AffineBilinear(Image8* im, const double m[6]);
// im.rotate(degrees, BILINEAR): counter-clockwise about the centre, same size, fill 0.
void Rotate(Image8* im, double degrees);
// ImageEnhance.{Color, Contrast, Brightness, Sharpness}(im).enhance(factor): blend of a degenerate
// image (greyscale; the mean grey; black; the SMOOTH-filtered image) and `im` with weight factor,
// extrapolating (clipped to [0, 255]) for factors outside [0, 1].
void EnhanceColor(Image8* im, double factor);
void EnhanceContrast(Image8* im, double factor);
void EnhanceBrightness(Image8* im, double factor);
void EnhanceSharpness(Image8* im, double factor);

// composer's augmentation_sets["all"], in its order.
enum class RandAugmentOp : int {
  kAutoContrast = 0,
  kEqualize,
  kPosterize,
  kRotate,
  kSolarize,
  kShearX,
  kShearY,
  kTranslateX,
  kTranslateY,
  kColor,
  kContrast,
  kBrightness,
  kSharpness,
};
inline constexpr int kNumRandAugmentOps = 13;
// composer's name of the operation ("autocontrast", "shear_x", ...).
std::string_view RandAugmentOpName(RandAugmentOp op);

// The authors' defaults (--rand-aug-severity 10, --rand-aug-depth 2).
struct RandAugmentOptions {
  int severity = 10;  // 1..10 (composer's documented range: 1 weakest, 10 strongest)
  int depth = 2;      // operations per image, 1..kMaxRandAugmentDepth
};
inline constexpr int kMaxRandAugmentDepth = 16;

// OK, or InvalidArgument naming the field, its value and the allowed range.
absl::Status ValidateRandAugmentOptions(const RandAugmentOptions& options);

// One drawn application: the operation and its parameter in the operation's own unit (bits,
// degrees, threshold, shear, pixels or enhancement factor; unused for autocontrast and equalize).
struct RandAugmentStep {
  RandAugmentOp op = RandAugmentOp::kAutoContrast;
  double value = 0;
};

// Draws one step for a width x height image as composer does (see the top of this file).
RandAugmentStep DrawRandAugmentStep(int severity, int width, int height, AugmentRng& rng);
// Applies a step with the matching operation above.
void ApplyRandAugmentStep(const RandAugmentStep& step, Image8* im);
// `options.depth` draws and applications. REQUIRES: ValidateRandAugmentOptions(options) is OK.
void RandAugment(const RandAugmentOptions& options, AugmentRng& rng, Image8* im);

}  // namespace qsr

#endif  // QSR_WORKER_DATA_RAND_AUGMENT_H_
