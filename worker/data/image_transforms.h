// The geometric image transforms of ImageNet training and evaluation, as torchvision applies them
// to PIL images, on 8-bit RGB decoded by jpeg.h:
//   training:   RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)) + RandomHorizontalFlip
//   evaluation: Resize(floor(size / 0.875)) (shorter side) + CenterCrop(size)
// followed by ToTensor + Normalize(mean, std). Each is a box in the stored image resampled to
// size x size with PIL's antialiased bilinear filter (support scaled by the reduction factor), so
// the crop-then-resize and resize-then-crop pairs become one separable pass over only the pixels
// used. The resampling runs in float (PIL rounds to 8 bits between its two passes).
//
// Pure functions, thread-safe. Nothing throws.
#ifndef QSR_WORKER_DATA_IMAGE_TRANSFORMS_H_
#define QSR_WORKER_DATA_IMAGE_TRANSFORMS_H_

#include <cstdint>

#include "worker/data/jpeg.h"
#include "worker/data/sampler.h"  // AugmentRng

namespace qsr {

// A rectangle in stored-image pixel coordinates: pixel (x, y) covers [x, x+1) x [y, y+1).
struct Box {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  double width() const { return x1 - x0; }
  double height() const { return y1 - y0; }
};

struct RandomResizedCropParams {
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
};

// torchvision's RandomResizedCrop.get_params for a width x height image (both >= 1): up to ten
// draws of an area fraction in [scale_min, scale_max) and a log-uniform aspect ratio, taking the
// first whose rounded size fits, at a uniform integer offset; else the centre crop with the
// aspect ratio clamped into [ratio_min, ratio_max]. Integer-aligned.
Box RandomResizedCropBox(int64_t width, int64_t height, const RandomResizedCropParams& params,
                         AugmentRng& rng);

// torchvision's Resize(resize) (shorter side to `resize`, the longer to
// floor(resize * long / short)) then CenterCrop(crop) (offset round((resized - crop) / 2)),
// expressed as the box of the stored image that the crop covers. REQUIRES: all sizes >= 1.
Box ResizeCenterCropBox(int64_t width, int64_t height, int64_t resize, int64_t crop);

// Per-channel normalisation of pixels scaled to [0, 1]: (v / 255 - mean) / std.
struct Normalization {
  float mean[3];
  float std[3];
};
inline constexpr Normalization kImageNetNormalization{{0.485f, 0.456f, 0.406f},
                                                      {0.229f, 0.224f, 0.225f}};

// Which stored pixels a resample of `box` to out_w x out_h reads, plus the coarsest JPEG decode
// scale (1, 2, 4 or 8) that keeps at least out_w x out_h pixels inside the box (so no detail the
// output can show is lost). `clip_to_box`: the filter reads only pixels inside the box (crop,
// then resize: RandomResizedCrop); otherwise it may read around it (resize, then crop).
JpegRegion PlanResample(int64_t width, int64_t height, const Box& box, int64_t out_w, int64_t out_h,
                        bool clip_to_box);

// Resamples `box` (stored-image coordinates) of `image` to out_w x out_h, mirrored left-right
// when `flip`, normalised, and writes float32 planar CHW (3 x out_h x out_w) to `out`. The box is
// mapped to the image's decode scale; pixels outside the decoded region or, with `clip_to_box`,
// outside the box are not read (the filter weights are renormalised, as PIL does at the edges).
// REQUIRES: the box lies within the image and has a positive size; out_w, out_h >= 1.
void ResampleNormalize(const JpegImage& image, const Box& box, bool clip_to_box, int64_t out_w,
                       int64_t out_h, bool flip, const Normalization& norm, float* out);

// As ResampleNormalize, but writes 8-bit interleaved RGB (out_h x out_w x 3), each value rounded
// to nearest and clamped to [0, 255] as PIL's resize stores it: the uint8 image that RandAugment
// works on (the authors' loader crops, flips, then augments 8-bit pixels).
void ResampleRgb8(const JpegImage& image, const Box& box, bool clip_to_box, int64_t out_w,
                  int64_t out_h, bool flip, uint8_t* out);

// ToTensor + Normalize of 8-bit interleaved RGB (height x width x 3) into float32 planar CHW.
void NormalizeRgb8(const uint8_t* rgb, int64_t width, int64_t height, const Normalization& norm,
                   float* out);

}  // namespace qsr

#endif  // QSR_WORKER_DATA_IMAGE_TRANSFORMS_H_
