// JPEG decoding and encoding with libjpeg-turbo (Debian: libjpeg62-turbo-dev).
//
// DecodeJpeg() reads the header first and asks the caller which part to decode, so a
// random-resized crop decodes only the rows and columns it samples from (jpeg_skip_scanlines,
// jpeg_crop_scanline) and, when the crop is much larger than the output, at 1/2, 1/4 or 1/8 of the
// size (libjpeg's scaled IDCT, the fast SIMD paths): the decode cost then scales with what is
// used rather than with the file.
//
// Thread-safe (no shared state; libjpeg errors are caught per call with setjmp/longjmp, never
// reaching exit()). Nothing throws.
#ifndef QSR_WORKER_DATA_JPEG_H_
#define QSR_WORKER_DATA_JPEG_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsr {

// What to decode, chosen once the stored size is known.
struct JpegRegion {
  int scale_denom = 1;  // 1, 2, 4 or 8: decode at ceil(size / scale_denom)
  // The stored-image pixels wanted, [x0, x1) x [y0, y1); an empty or out-of-range rectangle is
  // clamped to the image (x1 <= x0 or y1 <= y0: the whole width or height). The decoder may
  // return a slightly larger area (columns are aligned to the JPEG's blocks).
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

// A decoded, possibly scaled and cropped, image: 8-bit RGB, interleaved, rows packed.
struct JpegImage {
  std::vector<uint8_t> rgb;                 // height x width x 3
  int width = 0, height = 0;                // size of `rgb`
  int x0 = 0, y0 = 0;                       // where `rgb` starts in the scaled image
  int scaled_width = 0, scaled_height = 0;  // the whole image at the decode scale
  int stored_width = 0, stored_height = 0;  // the whole image as stored in the file
};

// Decodes `data[0, size)`. `plan(stored_width, stored_height)` picks the region (null: all of it at
// full size). Grayscale, YCbCr and RGB files become RGB; CMYK and YCCK (Adobe) files are
// converted to RGB. `out`'s buffer is reused across calls. DataLoss (with libjpeg's message) for a
// file that is not a JPEG or is corrupt; InvalidArgument for a bad scale_denom.
absl::Status DecodeJpeg(const uint8_t* data, size_t size,
                        const std::function<JpegRegion(int width, int height)>& plan,
                        JpegImage* out);

// Encodes 8-bit interleaved pixels (channels 1: grayscale, 3: RGB; rows packed) at `quality`
// (1..100) with 4:2:0 chroma subsampling. For tests and benchmarks. InvalidArgument for bad
// arguments, Internal for a libjpeg error.
absl::StatusOr<std::vector<uint8_t>> EncodeJpeg(const uint8_t* pixels, int width, int height,
                                                int channels, int quality = 90);

}  // namespace qsr

#endif  // QSR_WORKER_DATA_JPEG_H_
