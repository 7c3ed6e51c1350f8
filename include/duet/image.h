// duet/image.h — image decoding and the backbone's preprocessing, through OpenCV.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>

#include "duet/error.h"

namespace duet {

// What an image file's header says, read before any pixel is decoded. duet decodes four formats:
// JPEG, PNG, BMP and WebP (lossy, lossless and extended). OpenCV would decode more (TIFF, PNM,
// Sun raster, Radiance HDR, PFM, JPEG 2000, OpenEXR, DICOM); those are refused here by their
// magic bytes, so no decoder duet does not check ever sees untrusted bytes.
struct ImageHeader {
  const char* format = nullptr;  // "JPEG", "PNG", "BMP", "WebP"
  int64_t width = 0, height = 0;
};
// Throws Error naming `name` for bytes of another format or a header that is cut or malformed.
ImageHeader image_header(const std::string& bytes, const std::string& name);

// Images with more pixels than this are refused from their header, before decoding: a 20000 x
// 20000 PNG of 440 KB cannot make duet allocate gigabytes. DUET_MAX_PIXELS (a whole number of
// pixels, read once) changes it; default 64 Mpx (8192 x 8192, a 64-megapixel phone photo).
constexpr int64_t kDefaultMaxImagePixels = 64LL << 20;
constexpr int64_t kMostMaxImagePixels = 1LL << 40;  // what DUET_MAX_PIXELS may say at most
int64_t max_image_pixels();

// What decode_rgb throws for an image over max_image_pixels() (the server answers it with 413).
class ImageTooLarge : public Error {
 public:
  using Error::Error;
};
// image_header, and ImageTooLarge when it is over max_image_pixels(): what decode_rgb checks first.
ImageHeader checked_header(const std::string& bytes, const std::string& name);

// Decodes an image file as 8-bit RGB (greyscale is expanded, alpha composited on white so
// transparent sketches stay black-on-white, a JPEG turned upright by its EXIF orientation). Throws
// Error naming the file when it cannot: missing, empty, not one of the four formats, truncated (a
// JPEG without its end marker, a PNG short of data) or over max_image_pixels() (ImageTooLarge).
// With content_hash, also returns fnv1a of the file's bytes: what seeds its test-time views
// (duet/augment.h) and identifies it in a gallery index, whatever its name.
cv::Mat load_rgb(const std::string& path, uint64_t* content_hash = nullptr);
// An image file's bytes, refused (ImageTooLarge) unread when the file is larger than the pixel cap
// allows (8 bytes a pixel, 16-bit RGBA uncompressed, is the most any of the formats stores).
std::string read_image_file(const std::string& path);
// The same for bytes already in memory; `name` is what errors call them.
cv::Mat decode_rgb(const std::string& bytes, const std::string& name);

// A line drawing (dark strokes on white) cropped to its strokes' bounding box and centred on a
// white square kFrameMargin times the box's longer side: sketches drawn small or off-centre reach
// the backbone at one scale. An image without strokes comes back unchanged. The square is at most
// kMaxFrameSide pixels a side (a larger box is shrunk into it first): a thin stroke across a long
// image would otherwise make a canvas of gigabytes (a 3 x 60000 PNG of 300 bytes asked for 24 GB).
constexpr double kFrameMargin = 1.5;  // chosen on a validation split (README, "Sketch framing")
constexpr int kMaxFrameSide =
    2048;  // far above any backbone's input; Sketchy's 256 px never reach it
cv::Mat frame_strokes(const cv::Mat& rgb);
// Whether a drawing has any ink: a pixel frame_strokes would take as a stroke (grey <= 200).
bool has_ink(const cv::Mat& rgb);

// RGB uint8 image -> out[3 * size * size] float, CHW, resized to size x size (bilinear),
// (pixel - 128) / 128: the normalisation the TFLite MobileNets were trained with.
void to_chw(const cv::Mat& rgb, int size, float* out);

}  // namespace duet
