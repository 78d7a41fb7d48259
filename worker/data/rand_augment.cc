#include "worker/data/rand_augment.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

using Lut = std::array<uint8_t, 256>;

// Per-channel histograms.
std::array<std::array<int64_t, 256>, 3> Histograms(const Image8& im) {
  std::array<std::array<int64_t, 256>, 3> h{};
  const uint8_t* p = im.pixels.data();
  const size_t n = im.pixels.size();
  if (im.channels == 1) {
    for (size_t i = 0; i < n; ++i) ++h[0][p[i]];
  } else {
    for (size_t i = 0; i < n; i += 3) {
      ++h[0][p[i]];
      ++h[1][p[i + 1]];
      ++h[2][p[i + 2]];
    }
  }
  return h;
}

// Image.point(lut): one table per channel.
void ApplyLuts(const std::array<Lut, 3>& luts, Image8* im) {
  const int c = im->channels;
  uint8_t* p = im->pixels.data();
  const size_t n = im->pixels.size();
  if (c == 1) {
    for (size_t i = 0; i < n; ++i) p[i] = luts[0][p[i]];
    return;
  }
  for (size_t i = 0; i < n; i += 3) {
    p[i] = luts[0][p[i]];
    p[i + 1] = luts[1][p[i + 1]];
    p[i + 2] = luts[2][p[i + 2]];
  }
}

void ApplyLut(const Lut& lut, Image8* im) {
  for (uint8_t& v : im->pixels) v = lut[v];
}

Lut Identity() {
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i);
  return lut;
}

// Each thread's second buffer for operations that cannot work in place: the result is written
// here and swapped into the image, so the two buffers alternate without reallocating.
std::vector<uint8_t>& Scratch(size_t size) {
  thread_local std::vector<uint8_t> scratch;
  scratch.resize(size);
  return scratch;
}

// PIL's FLOOR in Geometry.c.
inline int FloorInt(double v) {
  return v < 0.0 ? static_cast<int>(std::floor(v)) : static_cast<int>(v);
}

// Output pixel (x, y) of an integer translation: the input pixel (x + tx, y + ty), or 0 outside.
// This is what the bilinear filter computes when both fractions are 0 (v + (w - v) * 0 == v).
void ShiftT(Image8* im, int tx, int ty) {
  const int w = im->width, h = im->height, c = im->channels;
  std::vector<uint8_t>& out = Scratch(im->pixels.size());
  std::fill(out.begin(), out.end(), 0);
  const int x_begin = std::clamp(-tx, 0, w), x_end = std::clamp(w - tx, 0, w);
  for (int y = 0; y < h; ++y) {
    const int sy = y + ty;
    if (sy < 0 || sy >= h || x_end <= x_begin) continue;
    std::copy_n(im->pixels.data() + (static_cast<size_t>(sy) * w + x_begin + tx) * c,
                static_cast<size_t>(x_end - x_begin) * c,
                out.data() + (static_cast<size_t>(y) * w + x_begin) * c);
  }
  im->pixels.swap(out);
}

template <int C>
void AffineBilinearT(Image8* im, const double m[6]) {
  const int w = im->width, h = im->height;
  std::vector<uint8_t>& out = Scratch(im->pixels.size());
  const uint8_t* in = im->pixels.data();
  uint8_t* o = out.data();
  const size_t stride = static_cast<size_t>(w) * C;
  // affine_transform and bilinear_filter* of Pillow's Geometry.c, operation for operation:
  // xin = (m0 (x + .5) + m1 (y + .5)) + m2 with the products computed once per column and row
  // (the same values, so the same sums). A fraction that is exactly 0 makes a lerp return its
  // first operand exactly, so those lerps are skipped (shears along one axis, translations).
  thread_local std::vector<double> col0, col3;
  col0.resize(w);
  col3.resize(w);
  for (int x = 0; x < w; ++x) {
    col0[x] = m[0] * (x + 0.5);
    col3[x] = m[3] * (x + 0.5);
  }
  for (int y = 0; y < h; ++y) {
    const double yo = y + 0.5;
    const double row1x = m[1] * yo, row1y = m[4] * yo;
    for (int x = 0; x < w; ++x, o += C) {
      double xin = col0[x] + row1x + m[2];
      double yin = col3[x] + row1y + m[5];
      if (xin < 0.0 || xin >= w || yin < 0.0 || yin >= h) {
        for (int c = 0; c < C; ++c) o[c] = 0;
        continue;
      }
      xin -= 0.5;
      yin -= 0.5;
      const int xi = FloorInt(xin);
      const int yi = FloorInt(yin);
      const double dx = xin - xi;
      const double dy = yin - yi;
      const int x0 = (xi < 0 ? 0 : xi < w ? xi : w - 1) * C;
      const int x1 = (xi + 1 < 0 ? 0 : xi + 1 < w ? xi + 1 : w - 1) * C;
      const uint8_t* row0 = in + static_cast<size_t>(yi < 0 ? 0 : yi < h ? yi : h - 1) * stride;
      const bool has_row1 = yi + 1 >= 0 && yi + 1 < h;
      if (dy == 0.0 || !has_row1) {
        if (dx == 0.0) {
          for (int c = 0; c < C; ++c) o[c] = row0[x0 + c];
        } else {
          for (int c = 0; c < C; ++c) {
            o[c] = static_cast<uint8_t>(row0[x0 + c] + (row0[x1 + c] - row0[x0 + c]) * dx);
          }
        }
        continue;
      }
      const uint8_t* row1 = in + static_cast<size_t>(yi + 1) * stride;
      if (dx == 0.0) {
        for (int c = 0; c < C; ++c) {
          const double v1 = row0[x0 + c], v2 = row1[x0 + c];
          o[c] = static_cast<uint8_t>(v1 + (v2 - v1) * dy);
        }
        continue;
      }
      for (int c = 0; c < C; ++c) {
        const double v1 = row0[x0 + c] + (row0[x1 + c] - row0[x0 + c]) * dx;
        const double v2 = row1[x0 + c] + (row1[x1 + c] - row1[x0 + c]) * dx;
        o[c] = static_cast<uint8_t>(v1 + (v2 - v1) * dy);
      }
    }
  }
  im->pixels.swap(out);
}

// Python's round(v, 15): correctly rounded to 15 decimals (glibc's printf is exact, as is
// CPython's dtoa), then back to the nearest double.
double Round15(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.15f", v);
  return std::strtod(buf, nullptr);
}

// The loops below over contiguous bytes vectorise; on x86-64 GCC also builds an AVX2 copy of
// each, chosen at load time on CPUs that have it (about 3x faster there). Only the vector width
// differs: AVX2 without FMA computes the same float operations, so the results are identical.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QSR_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QSR_SIMD_CLONES
#endif

// Filter.c's clip8 (and Blend.c's clipping): 0 at or below 0, 255 at or above, else truncated.
inline uint8_t Clip8(float v) {
  return static_cast<uint8_t>(static_cast<int>(std::min(std::max(v, 0.0f), 255.0f)));
}

QSR_SIMD_CLONES void BlendSpan(const uint8_t* degenerate, float alpha, bool clip, uint8_t* p,
                               size_t n) {
  if (!clip) {
    for (size_t i = 0; i < n; ++i) {
      const int a = degenerate[i];
      p[i] = static_cast<uint8_t>(static_cast<float>(a) +
                                  alpha * static_cast<float>(static_cast<int>(p[i]) - a));
    }
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const int a = degenerate[i];
    p[i] = Clip8(static_cast<float>(a) + alpha * static_cast<float>(static_cast<int>(p[i]) - a));
  }
}

// Image.blend(degenerate, im, factor) (Pillow's Blend.c): alpha is a C float, the arithmetic is
// float and the result truncated, clipped only when extrapolating.
void Blend(const uint8_t* degenerate, double factor, Image8* im) {
  const float alpha = static_cast<float>(factor);
  uint8_t* p = im->pixels.data();
  const size_t n = im->pixels.size();
  if (alpha == 0.0f) {
    std::copy(degenerate, degenerate + n, p);
    return;
  }
  if (alpha == 1.0f) return;
  BlendSpan(degenerate, alpha, /*clip=*/!(alpha >= 0 && alpha <= 1.0f), p, n);
}

// One interior row of the SMOOTH filter: values [begin, end) of the interleaved row, whose
// horizontal neighbours are `c` bytes away.
QSR_SIMD_CLONES void SmoothRow(const uint8_t* up, const uint8_t* mid, const uint8_t* down, int c,
                               int begin, int end, uint8_t* o) {
  const float k1 = 1.0f / 13.0f;
  const float k5 = 5.0f / 13.0f;
  for (int i = begin; i < end; ++i) {
    float ss = 0.5f;
    ss += static_cast<float>(down[i - c]) * k1 + static_cast<float>(down[i]) * k1 +
          static_cast<float>(down[i + c]) * k1;
    ss += static_cast<float>(mid[i - c]) * k1 + static_cast<float>(mid[i]) * k5 +
          static_cast<float>(mid[i + c]) * k1;
    ss += static_cast<float>(up[i - c]) * k1 + static_cast<float>(up[i]) * k1 +
          static_cast<float>(up[i + c]) * k1;
    o[i] = Clip8(ss);
  }
}

// Image.convert("L") of one RGB pixel (ITU-R 601-2 luma in 16-bit fixed point, Convert.c).
inline uint8_t Luma(const uint8_t* rgb) {
  return static_cast<uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

// ImageFilter.SMOOTH (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, divisor 13) as Filter.c's
// ImagingFilter3x3 computes it: float taps, rows summed bottom to top, 0.5 added for rounding;
// the border rows and columns are copied.
template <int C>
void SmoothT(const Image8& im, uint8_t* out) {
  const int w = im.width, h = im.height;
  const uint8_t* in = im.pixels.data();
  if (w < 3 || h < 3) {
    std::copy(im.pixels.begin(), im.pixels.end(), out);
    return;
  }
  const size_t stride = static_cast<size_t>(w) * C;
  std::copy(in, in + stride, out);
  std::copy(in + (h - 1) * stride, in + h * stride, out + (h - 1) * stride);
  for (int y = 1; y < h - 1; ++y) {
    const uint8_t* up = in + (y - 1) * stride;
    const uint8_t* mid = in + y * stride;
    const uint8_t* down = in + (y + 1) * stride;
    uint8_t* o = out + y * stride;
    for (int c = 0; c < C; ++c) {
      o[c] = mid[c];
      o[(w - 1) * C + c] = mid[(w - 1) * C + c];
    }
    // Interleaved channels: one contiguous loop over the interior covers every channel.
    SmoothRow(up, mid, down, C, C, (w - 1) * C, o);
  }
}

}  // namespace

void AutoContrast(Image8* im) {
  const auto hist = Histograms(*im);
  std::array<Lut, 3> luts;
  for (int c = 0; c < im->channels; ++c) {
    const auto& h = hist[c];
    int lo = 0, hi = 255;
    while (lo < 255 && h[lo] == 0) ++lo;
    while (hi > 0 && h[hi] == 0) --hi;
    if (hi <= lo) {
      luts[c] = Identity();
      continue;
    }
    const double scale = 255.0 / (hi - lo);
    const double offset = -lo * scale;
    for (int i = 0; i < 256; ++i) {
      const int v = static_cast<int>(i * scale + offset);  // Python's int(): toward zero
      luts[c][i] = static_cast<uint8_t>(std::clamp(v, 0, 255));
    }
  }
  ApplyLuts(luts, im);
}

void Equalize(Image8* im) {
  const auto hist = Histograms(*im);
  std::array<Lut, 3> luts;
  for (int c = 0; c < im->channels; ++c) {
    const auto& h = hist[c];
    int64_t total = 0, last = 0, nonzero = 0;
    for (int i = 0; i < 256; ++i) {
      if (h[i] == 0) continue;
      total += h[i];
      last = h[i];
      ++nonzero;
    }
    const int64_t step = nonzero <= 1 ? 0 : (total - last) / 256;
    if (step == 0) {
      luts[c] = Identity();
      continue;
    }
    int64_t n = step / 2;
    for (int i = 0; i < 256; ++i) {
      // Image.point() clips the table's values to 8 bits.
      luts[c][i] = static_cast<uint8_t>(std::min<int64_t>(n / step, 255));
      n += h[i];
    }
  }
  ApplyLuts(luts, im);
}

void Posterize(Image8* im, int bits) {
  const int mask = ~((1 << (8 - bits)) - 1) & 0xff;
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i & mask);
  ApplyLut(lut, im);
}

void Solarize(Image8* im, int threshold) {
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i < threshold ? i : 255 - i);
  ApplyLut(lut, im);
}

void AffineBilinear(Image8* im, const double m[6]) {
  if (m[0] == 1 && m[1] == 0 && m[3] == 0 && m[4] == 1 && m[2] == std::trunc(m[2]) &&
      m[5] == std::trunc(m[5]) && std::abs(m[2]) < (1 << 30) && std::abs(m[5]) < (1 << 30)) {
    return ShiftT(im, static_cast<int>(m[2]), static_cast<int>(m[5]));
  }
  if (im->channels == 1) {
    AffineBilinearT<1>(im, m);
  } else {
    AffineBilinearT<3>(im, m);
  }
}

void Rotate(Image8* im, double degrees) {
  // Image.rotate(angle, BILINEAR) with expand, center and translate at their defaults.
  const double angle = degrees - 360.0 * std::floor(degrees / 360.0);  // Python's angle % 360.0
  const int w = im->width, h = im->height, c = im->channels;
  if (angle == 0) return;
  if (angle == 180 || ((angle == 90 || angle == 270) && w == h)) {
    // Image.transpose: exact pixel moves.
    std::vector<uint8_t>& out = Scratch(im->pixels.size());
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        int sx = w - 1 - x, sy = h - 1 - y;  // 180
        if (angle == 90) {
          sx = w - 1 - y;
          sy = x;
        } else if (angle == 270) {
          sx = y;
          sy = h - 1 - x;
        }
        for (int k = 0; k < c; ++k) {
          out[(static_cast<size_t>(y) * w + x) * c + k] = im->at(sx, sy, k);
        }
      }
    }
    im->pixels.swap(out);
    return;
  }
  const double a = -(angle * (M_PI / 180.0));  // -math.radians(angle)
  double m[6] = {Round15(std::cos(a)),  Round15(std::sin(a)), 0.0,
                 Round15(-std::sin(a)), Round15(std::cos(a)), 0.0};
  const double cx = w / 2.0, cy = h / 2.0;
  const double tx = m[0] * -cx + m[1] * -cy + m[2];
  const double ty = m[3] * -cx + m[4] * -cy + m[5];
  m[2] = tx + cx;
  m[5] = ty + cy;
  AffineBilinear(im, m);
}

void EnhanceColor(Image8* im, double factor) {
  if (im->channels == 1) return;  // the greyscale of a greyscale image is itself
  std::vector<uint8_t>& grey = Scratch(im->pixels.size());
  for (size_t i = 0; i < im->pixels.size(); i += 3) {
    const uint8_t l = Luma(&im->pixels[i]);
    grey[i] = grey[i + 1] = grey[i + 2] = l;
  }
  Blend(grey.data(), factor, im);
}

void EnhanceContrast(Image8* im, double factor) {
  // int(ImageStat.Stat(im.convert("L")).mean[0] + 0.5)
  int64_t sum = 0;
  const size_t n = im->pixels.size();
  if (im->channels == 1) {
    for (size_t i = 0; i < n; ++i) sum += im->pixels[i];
  } else {
    for (size_t i = 0; i < n; i += 3) sum += Luma(&im->pixels[i]);
  }
  const double count = static_cast<double>(n / im->channels);
  const int mean = static_cast<int>(static_cast<double>(sum) / count + 0.5);
  std::vector<uint8_t>& degenerate = Scratch(n);
  std::fill(degenerate.begin(), degenerate.end(), static_cast<uint8_t>(mean));
  Blend(degenerate.data(), factor, im);
}

void EnhanceBrightness(Image8* im, double factor) {
  std::vector<uint8_t>& black = Scratch(im->pixels.size());
  std::fill(black.begin(), black.end(), 0);
  Blend(black.data(), factor, im);
}

void EnhanceSharpness(Image8* im, double factor) {
  std::vector<uint8_t>& smooth = Scratch(im->pixels.size());
  if (im->channels == 1) {
    SmoothT<1>(*im, smooth.data());
  } else {
    SmoothT<3>(*im, smooth.data());
  }
  Blend(smooth.data(), factor, im);
}

std::string_view RandAugmentOpName(RandAugmentOp op) {
  switch (op) {
    case RandAugmentOp::kAutoContrast:
      return "autocontrast";
    case RandAugmentOp::kEqualize:
      return "equalize";
    case RandAugmentOp::kPosterize:
      return "posterize";
    case RandAugmentOp::kRotate:
      return "rotate";
    case RandAugmentOp::kSolarize:
      return "solarize";
    case RandAugmentOp::kShearX:
      return "shear_x";
    case RandAugmentOp::kShearY:
      return "shear_y";
    case RandAugmentOp::kTranslateX:
      return "translate_x";
    case RandAugmentOp::kTranslateY:
      return "translate_y";
    case RandAugmentOp::kColor:
      return "color";
    case RandAugmentOp::kContrast:
      return "contrast";
    case RandAugmentOp::kBrightness:
      return "brightness";
    case RandAugmentOp::kSharpness:
      return "sharpness";
  }
  return "unknown";
}

absl::Status ValidateRandAugmentOptions(const RandAugmentOptions& options) {
  if (options.severity < 1 || options.severity > 10) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rand_aug_severity must be in [1, 10] (composer's range; 10 = strongest), got ",
        options.severity));
  }
  if (options.depth < 1 || options.depth > kMaxRandAugmentDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("rand_aug_depth must be in [1, ", kMaxRandAugmentDepth,
                     "] (operations applied to each image), got ", options.depth));
  }
  return absl::OkStatus();
}

RandAugmentStep DrawRandAugmentStep(int severity, int width, int height, AugmentRng& rng) {
  RandAugmentStep step;
  step.op = static_cast<RandAugmentOp>(rng.UniformInt(0, kNumRandAugmentOps - 1));
  const double s = severity;
  const auto level = [&] { return rng.Uniform(0.1, s); };  // _sample_level
  const auto sign = [&](double v) { return rng.Uniform() > 0.5 ? -v : v; };
  const auto symmetric = [&] {  // _symmetric_sample
    return rng.Uniform() > 0.5 ? rng.Uniform(1.0, s) : rng.Uniform(1.0 - 0.09 * s, 1.0);
  };
  switch (step.op) {
    case RandAugmentOp::kAutoContrast:
    case RandAugmentOp::kEqualize:
      break;
    case RandAugmentOp::kPosterize:
      step.value = 4 - static_cast<int>(level() * 4 / 10);
      break;
    case RandAugmentOp::kRotate:
      step.value = sign(static_cast<int>(level() * 30 / 10));
      break;
    case RandAugmentOp::kSolarize:
      step.value = 256 - static_cast<int>(level() * 256 / 10);
      break;
    case RandAugmentOp::kShearX:
    case RandAugmentOp::kShearY:
      step.value = sign(level() * 0.3 / 10.0);
      break;
    case RandAugmentOp::kTranslateX:
      step.value = sign(static_cast<int>(level() * (width / 3.0) / 10));
      break;
    case RandAugmentOp::kTranslateY:
      step.value = sign(static_cast<int>(level() * (height / 3.0) / 10));
      break;
    case RandAugmentOp::kColor:
    case RandAugmentOp::kContrast:
    case RandAugmentOp::kSharpness:
      step.value = symmetric();
      break;
    case RandAugmentOp::kBrightness: {
      const double v = symmetric();
      step.value = v > 1 ? v * 0.75 : v;  // composer weakens brightening
      break;
    }
  }
  return step;
}

void ApplyRandAugmentStep(const RandAugmentStep& step, Image8* im) {
  const double v = step.value;
  switch (step.op) {
    case RandAugmentOp::kAutoContrast:
      return AutoContrast(im);
    case RandAugmentOp::kEqualize:
      return Equalize(im);
    case RandAugmentOp::kPosterize:
      return Posterize(im, static_cast<int>(v));
    case RandAugmentOp::kRotate:
      return Rotate(im, v);
    case RandAugmentOp::kSolarize:
      return Solarize(im, static_cast<int>(v));
    case RandAugmentOp::kShearX: {
      const double m[6] = {1, v, 0, 0, 1, 0};
      return AffineBilinear(im, m);
    }
    case RandAugmentOp::kShearY: {
      const double m[6] = {1, 0, 0, v, 1, 0};
      return AffineBilinear(im, m);
    }
    case RandAugmentOp::kTranslateX: {
      const double m[6] = {1, 0, v, 0, 1, 0};
      return AffineBilinear(im, m);
    }
    case RandAugmentOp::kTranslateY: {
      const double m[6] = {1, 0, 0, 0, 1, v};
      return AffineBilinear(im, m);
    }
    case RandAugmentOp::kColor:
      return EnhanceColor(im, v);
    case RandAugmentOp::kContrast:
      return EnhanceContrast(im, v);
    case RandAugmentOp::kBrightness:
      return EnhanceBrightness(im, v);
    case RandAugmentOp::kSharpness:
      return EnhanceSharpness(im, v);
  }
}

void RandAugment(const RandAugmentOptions& options, AugmentRng& rng, Image8* im) {
  for (int i = 0; i < options.depth; ++i) {
    ApplyRandAugmentStep(DrawRandAugmentStep(options.severity, im->width, im->height, rng), im);
  }
}

}  // namespace qsr
