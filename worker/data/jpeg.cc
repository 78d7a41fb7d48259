#include "worker/data/jpeg.h"

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

// libjpeg reports fatal errors through error_exit, which must not return: jump back to the
// setjmp in the calling function with the formatted message. Warnings (e.g. a truncated file,
// whose missing rows libjpeg fills with gray) are ignored, as PIL-based loaders do.
struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void ErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void IgnoreMessage(j_common_ptr) {}

void InitErrors(ErrorManager* err) {
  jpeg_std_error(&err->pub);
  err->pub.error_exit = ErrorExit;
  err->pub.output_message = IgnoreMessage;
  err->message[0] = '\0';
}

// Ceil(a * b / c) for non-negative values that fit in int64.
int64_t CeilMulDiv(int64_t a, int64_t b, int64_t c) { return (a * b + c - 1) / c; }

// The libjpeg part of DecodeJpeg: may longjmp to the caller's setjmp, so it creates no object with
// a destructor. Returns false for a bad scale_denom.
bool DecodeUnchecked(jpeg_decompress_struct* cinfo, const uint8_t* data, size_t size,
                     const std::function<JpegRegion(int, int)>& plan, JpegImage* out) {
  jpeg_mem_src(cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(cinfo, TRUE);
  const int stored_w = static_cast<int>(cinfo->image_width);
  const int stored_h = static_cast<int>(cinfo->image_height);
  const JpegRegion region = plan ? plan(stored_w, stored_h) : JpegRegion{};
  if (region.scale_denom != 1 && region.scale_denom != 2 && region.scale_denom != 4 &&
      region.scale_denom != 8) {
    return false;
  }
  const bool cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
  cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  cinfo->scale_num = 1;
  cinfo->scale_denom = static_cast<unsigned int>(region.scale_denom);
  jpeg_start_decompress(cinfo);
  const int sw = static_cast<int>(cinfo->output_width);
  const int sh = static_cast<int>(cinfo->output_height);

  // The wanted rectangle in scaled pixels, rounded outwards.
  int x0 = 0, x1 = sw, y0 = 0, y1 = sh;
  if (region.x1 > region.x0) {
    x0 = static_cast<int>(std::clamp<int64_t>(int64_t{region.x0} * sw / stored_w, 0, sw - 1));
    x1 = static_cast<int>(std::clamp<int64_t>(CeilMulDiv(region.x1, sw, stored_w), x0 + 1, sw));
  }
  if (region.y1 > region.y0) {
    y0 = static_cast<int>(std::clamp<int64_t>(int64_t{region.y0} * sh / stored_h, 0, sh - 1));
    y1 = static_cast<int>(std::clamp<int64_t>(CeilMulDiv(region.y1, sh, stored_h), y0 + 1, sh));
  }
  if (x0 > 0 || x1 < sw) {
    JDIMENSION xoffset = static_cast<JDIMENSION>(x0);
    JDIMENSION width = static_cast<JDIMENSION>(x1 - x0);
    jpeg_crop_scanline(cinfo, &xoffset, &width);  // aligns xoffset down to an iMCU boundary
    x0 = static_cast<int>(xoffset);
    x1 = x0 + static_cast<int>(width);
  }
  const int width = static_cast<int>(cinfo->output_width);  // == x1 - x0
  const int height = y1 - y0;
  out->width = width;
  out->height = height;
  out->x0 = x0;
  out->y0 = y0;
  out->scaled_width = sw;
  out->scaled_height = sh;
  out->stored_width = stored_w;
  out->stored_height = stored_h;
  out->rgb.resize(static_cast<size_t>(width) * height * 3);

  if (y0 > 0) jpeg_skip_scanlines(cinfo, static_cast<JDIMENSION>(y0));
  JSAMPARRAY cmyk_row = nullptr;
  if (cmyk) {
    cmyk_row = (*cinfo->mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(cinfo), JPOOL_IMAGE,
                                           static_cast<JDIMENSION>(width) * 4, 1);
  }
  // Adobe's CMYK JPEGs store inverted values (0 = full ink).
  const bool inverted = cinfo->saw_Adobe_marker;
  while (static_cast<int>(cinfo->output_scanline) < y1) {
    const int row = static_cast<int>(cinfo->output_scanline) - y0;
    uint8_t* dst = out->rgb.data() + static_cast<size_t>(row) * width * 3;
    if (!cmyk) {
      JSAMPROW rows[1] = {dst};
      jpeg_read_scanlines(cinfo, rows, 1);
      continue;
    }
    jpeg_read_scanlines(cinfo, cmyk_row, 1);
    const uint8_t* src = cmyk_row[0];
    for (int x = 0; x < width; ++x, src += 4, dst += 3) {
      const int k = inverted ? src[3] : 255 - src[3];
      for (int c = 0; c < 3; ++c) {
        const int v = inverted ? src[c] : 255 - src[c];
        dst[c] = static_cast<uint8_t>((v * k + 127) / 255);
      }
    }
  }
  // The rows below y1 are not needed: jpeg_destroy_decompress() (in the caller) drops them.
  return true;
}

bool EncodeUnchecked(jpeg_compress_struct* cinfo, const uint8_t* pixels, int width, int height,
                     int channels, int quality, unsigned char** buffer, unsigned long* size) {
  jpeg_mem_dest(cinfo, buffer, size);
  cinfo->image_width = static_cast<JDIMENSION>(width);
  cinfo->image_height = static_cast<JDIMENSION>(height);
  cinfo->input_components = channels;
  cinfo->in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(cinfo);
  jpeg_set_quality(cinfo, quality, TRUE);
  jpeg_start_compress(cinfo, TRUE);
  const size_t stride = static_cast<size_t>(width) * channels;
  while (cinfo->next_scanline < cinfo->image_height) {
    JSAMPROW row[1] = {const_cast<uint8_t*>(pixels) + cinfo->next_scanline * stride};
    jpeg_write_scanlines(cinfo, row, 1);
  }
  jpeg_finish_compress(cinfo);
  return true;
}

}  // namespace

absl::Status DecodeJpeg(const uint8_t* data, size_t size,
                        const std::function<JpegRegion(int width, int height)>& plan,
                        JpegImage* out) {
  if (data == nullptr || size == 0) return absl::DataLossError("empty file, not a JPEG");
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  InitErrors(&err);
  cinfo.err = &err.pub;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return absl::DataLossError(absl::StrCat("JPEG decoding failed: ", err.message));
  }
  jpeg_create_decompress(&cinfo);
  const bool ok = DecodeUnchecked(&cinfo, data, size, plan, out);
  jpeg_destroy_decompress(&cinfo);
  if (!ok) return absl::InvalidArgumentError("JPEG scale_denom must be 1, 2, 4 or 8");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> EncodeJpeg(const uint8_t* pixels, int width, int height,
                                                int channels, int quality) {
  if (pixels == nullptr || width < 1 || height < 1 || (channels != 1 && channels != 3) ||
      quality < 1 || quality > 100) {
    return absl::InvalidArgumentError(absl::StrCat("EncodeJpeg: bad arguments (", width, "x",
                                                   height, "x", channels, ", quality ", quality,
                                                   ")"));
  }
  jpeg_compress_struct cinfo;
  ErrorManager err;
  InitErrors(&err);
  cinfo.err = &err.pub;
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::free(buffer);
    return absl::InternalError(absl::StrCat("JPEG encoding failed: ", err.message));
  }
  jpeg_create_compress(&cinfo);
  EncodeUnchecked(&cinfo, pixels, width, height, channels, quality, &buffer, &size);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> bytes(buffer, buffer + size);
  std::free(buffer);
  return bytes;
}

}  // namespace qsr
