#include "worker/data/image_transforms.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace qsr {
namespace {

// Python's round(): half to even (the default floating-point rounding mode).
int64_t RoundHalfEven(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

// PIL's bilinear ("triangle") filter, support 1.
double Triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// The filter taps of one axis: output i reads `count[i]` inputs from `first[i]` with
// weights[offset[i] ...]. Follows PIL's precompute_coeffs, with the window clipped to [lo, hi).
struct Taps {
  std::vector<int> first, count, offset;
  std::vector<float> weights;
};

void ComputeTaps(double b0, double b1, int64_t n, int lo, int hi, Taps* taps) {
  const double scale = (b1 - b0) / static_cast<double>(n);
  const double filterscale = std::max(scale, 1.0);
  const double support = filterscale;  // the triangle's support (1) times filterscale
  taps->first.resize(n);
  taps->count.resize(n);
  taps->offset.resize(n);
  taps->weights.clear();
  std::vector<double> w;
  for (int64_t i = 0; i < n; ++i) {
    const double center = b0 + (static_cast<double>(i) + 0.5) * scale;
    int xmin = static_cast<int>(std::floor(center - support + 0.5));
    int xmax = static_cast<int>(std::floor(center + support + 0.5));
    xmin = std::clamp(xmin, lo, hi - 1);
    xmax = std::clamp(xmax, xmin + 1, hi);
    w.assign(xmax - xmin, 0.0);
    double total = 0;
    for (int x = xmin; x < xmax; ++x) {
      w[x - xmin] = Triangle((x + 0.5 - center) / filterscale);
      total += w[x - xmin];
    }
    if (total <= 0) {  // no tap inside the window: take the nearest pixel
      const int nearest = std::clamp(static_cast<int>(std::floor(center)), xmin, xmax - 1);
      std::fill(w.begin(), w.end(), 0.0);
      w[nearest - xmin] = 1.0;
      total = 1.0;
    }
    taps->first[i] = xmin;
    taps->count[i] = xmax - xmin;
    taps->offset[i] = static_cast<int>(taps->weights.size());
    for (double v : w) taps->weights.push_back(static_cast<float>(v / total));
  }
}

}  // namespace

Box RandomResizedCropBox(int64_t width, int64_t height, const RandomResizedCropParams& params,
                         AugmentRng& rng) {
  const double area = static_cast<double>(width) * static_cast<double>(height);
  const double log_lo = std::log(params.ratio_min), log_hi = std::log(params.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.Uniform(params.scale_min, params.scale_max);
    const double aspect = std::exp(rng.Uniform(log_lo, log_hi));
    const int64_t w = RoundHalfEven(std::sqrt(target_area * aspect));
    const int64_t h = RoundHalfEven(std::sqrt(target_area / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int64_t top = rng.UniformInt(0, height - h);
      const int64_t left = rng.UniformInt(0, width - w);
      return Box{static_cast<double>(left), static_cast<double>(top), static_cast<double>(left + w),
                 static_cast<double>(top + h)};
    }
  }
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  int64_t w = width, h = height;
  if (in_ratio < params.ratio_min) {
    h = RoundHalfEven(static_cast<double>(w) / params.ratio_min);
  } else if (in_ratio > params.ratio_max) {
    w = RoundHalfEven(static_cast<double>(h) * params.ratio_max);
  }
  const int64_t top = (height - h) / 2, left = (width - w) / 2;
  return Box{static_cast<double>(left), static_cast<double>(top), static_cast<double>(left + w),
             static_cast<double>(top + h)};
}

Box ResizeCenterCropBox(int64_t width, int64_t height, int64_t resize, int64_t crop) {
  int64_t rw = resize, rh = resize;
  if (width < height) {
    rh = resize * height / width;
  } else if (height < width) {
    rw = resize * width / height;
  }
  // CenterCrop of a (rw x rh) image; torchvision pads when the crop is larger, which a resize to
  // floor(crop / 0.875) never needs, so clamp instead.
  const int64_t top = std::max<int64_t>(0, RoundHalfEven(static_cast<double>(rh - crop) / 2.0));
  const int64_t left = std::max<int64_t>(0, RoundHalfEven(static_cast<double>(rw - crop) / 2.0));
  const double sx = static_cast<double>(width) / static_cast<double>(rw);
  const double sy = static_cast<double>(height) / static_cast<double>(rh);
  return Box{left * sx, top * sy, std::min<double>(width, (left + crop) * sx),
             std::min<double>(height, (top + crop) * sy)};
}

JpegRegion PlanResample(int64_t width, int64_t height, const Box& box, int64_t out_w, int64_t out_h,
                        bool clip_to_box) {
  JpegRegion region;
  for (int denom : {8, 4, 2}) {
    if (box.width() / denom >= static_cast<double>(out_w) &&
        box.height() / denom >= static_cast<double>(out_h)) {
      region.scale_denom = denom;
      break;
    }
  }
  // Without clipping, the filter reaches up to max(reduction, 1) output pixels around the box;
  // one decode-scale pixel more covers the rounding of the scaled coordinates.
  const double mx =
      clip_to_box ? 0.0 : std::max(box.width() / out_w, 1.0) * 1.5 + region.scale_denom;
  const double my =
      clip_to_box ? 0.0 : std::max(box.height() / out_h, 1.0) * 1.5 + region.scale_denom;
  region.x0 = static_cast<int>(std::clamp<double>(std::floor(box.x0 - mx), 0, width - 1));
  region.y0 = static_cast<int>(std::clamp<double>(std::floor(box.y0 - my), 0, height - 1));
  region.x1 = static_cast<int>(std::clamp<double>(std::ceil(box.x1 + mx), region.x0 + 1, width));
  region.y1 = static_cast<int>(std::clamp<double>(std::ceil(box.y1 + my), region.y0 + 1, height));
  return region;
}

namespace {

// The separable resample shared by the outputs below: calls row(j, acc) for each output row j
// with the row's float values, interleaved RGB (out_w x 3), not yet rounded or flipped.
template <typename RowFn>
void Resample(const JpegImage& image, const Box& box, bool clip_to_box, int64_t out_w,
              int64_t out_h, RowFn&& row) {
  // Scratch reused by the calling thread (a loader's decode thread) across images.
  thread_local Taps htaps, vtaps;
  thread_local std::vector<float> tmp, acc;

  // The box in the coordinates of the decoded region: scaled, then shifted to its origin.
  const double sx = static_cast<double>(image.scaled_width) / image.stored_width;
  const double sy = static_cast<double>(image.scaled_height) / image.stored_height;
  const double bx0 = box.x0 * sx - image.x0, bx1 = box.x1 * sx - image.x0;
  const double by0 = box.y0 * sy - image.y0, by1 = box.y1 * sy - image.y0;
  int xlo = 0, xhi = image.width, ylo = 0, yhi = image.height;
  if (clip_to_box) {
    // A small tolerance keeps an integer box edge that became x.0000001 after scaling in place.
    xlo = std::max(xlo, static_cast<int>(std::floor(bx0 + 1e-6)));
    xhi = std::min(xhi, static_cast<int>(std::ceil(bx1 - 1e-6)));
    ylo = std::max(ylo, static_cast<int>(std::floor(by0 + 1e-6)));
    yhi = std::min(yhi, static_cast<int>(std::ceil(by1 - 1e-6)));
    xhi = std::max(xhi, xlo + 1);
    yhi = std::max(yhi, ylo + 1);
  }
  ComputeTaps(bx0, bx1, out_w, xlo, xhi, &htaps);
  ComputeTaps(by0, by1, out_h, ylo, yhi, &vtaps);

  // Horizontal pass over the rows the vertical taps read: tmp is rows x out_w x 3.
  const int row0 = vtaps.first.front();
  const int row1 = vtaps.first.back() + vtaps.count.back();
  const int64_t tmp_stride = out_w * 3;
  tmp.resize(static_cast<size_t>(row1 - row0) * tmp_stride);
  for (int r = row0; r < row1; ++r) {
    const uint8_t* src = image.rgb.data() + static_cast<size_t>(r) * image.width * 3;
    float* dst = tmp.data() + static_cast<size_t>(r - row0) * tmp_stride;
    for (int64_t i = 0; i < out_w; ++i) {
      const float* w = htaps.weights.data() + htaps.offset[i];
      const uint8_t* p = src + htaps.first[i] * 3;
      float a = 0, b = 0, c = 0;
      for (int k = 0; k < htaps.count[i]; ++k, p += 3) {
        a += w[k] * p[0];
        b += w[k] * p[1];
        c += w[k] * p[2];
      }
      dst[i * 3] = a;
      dst[i * 3 + 1] = b;
      dst[i * 3 + 2] = c;
    }
  }

  // Vertical pass.
  acc.resize(tmp_stride);
  for (int64_t j = 0; j < out_h; ++j) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    const float* w = vtaps.weights.data() + vtaps.offset[j];
    float* __restrict a = acc.data();
    for (int k = 0; k < vtaps.count[j]; ++k) {
      const float* __restrict src =
          tmp.data() + static_cast<size_t>(vtaps.first[j] + k - row0) * tmp_stride;
      const float wk = w[k];
      for (int64_t t = 0; t < tmp_stride; ++t) a[t] += wk * src[t];
    }
    row(j, static_cast<const float*>(a));
  }
}

}  // namespace

void ResampleNormalize(const JpegImage& image, const Box& box, bool clip_to_box, int64_t out_w,
                       int64_t out_h, bool flip, const Normalization& norm, float* out) {
  // Normalise into planar CHW: v / 255 * (1 / std) - mean / std.
  float gain[3], bias[3];
  for (int c = 0; c < 3; ++c) {
    gain[c] = 1.0f / (255.0f * norm.std[c]);
    bias[c] = -norm.mean[c] / norm.std[c];
  }
  const int64_t plane = out_w * out_h;
  Resample(image, box, clip_to_box, out_w, out_h, [&](int64_t j, const float* acc) {
    for (int c = 0; c < 3; ++c) {
      float* dst = out + c * plane + j * out_w;
      for (int64_t i = 0; i < out_w; ++i) {
        const int64_t to = flip ? out_w - 1 - i : i;
        dst[to] = acc[i * 3 + c] * gain[c] + bias[c];
      }
    }
  });
}

void ResampleRgb8(const JpegImage& image, const Box& box, bool clip_to_box, int64_t out_w,
                  int64_t out_h, bool flip, uint8_t* out) {
  Resample(image, box, clip_to_box, out_w, out_h, [&](int64_t j, const float* acc) {
    uint8_t* dst = out + j * out_w * 3;
    for (int64_t i = 0; i < out_w; ++i) {
      const int64_t to = (flip ? out_w - 1 - i : i) * 3;
      for (int c = 0; c < 3; ++c) {
        const float v = acc[i * 3 + c] + 0.5f;
        dst[to + c] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : static_cast<uint8_t>(v);
      }
    }
  });
}

void NormalizeRgb8(const uint8_t* rgb, int64_t width, int64_t height, const Normalization& norm,
                   float* out) {
  float table[3][256];
  for (int c = 0; c < 3; ++c) {
    const float gain = 1.0f / (255.0f * norm.std[c]);
    const float bias = -norm.mean[c] / norm.std[c];
    for (int v = 0; v < 256; ++v) table[c][v] = static_cast<float>(v) * gain + bias;
  }
  const int64_t plane = width * height;
  for (int64_t p = 0; p < plane; ++p) {
    out[p] = table[0][rgb[p * 3]];
    out[plane + p] = table[1][rgb[p * 3 + 1]];
    out[2 * plane + p] = table[2][rgb[p * 3 + 2]];
  }
}

}  // namespace qsr
