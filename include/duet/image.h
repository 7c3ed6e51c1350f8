// duet/image.h — image decoding and the backbone's preprocessing, through OpenCV.
#pragma once

#include <opencv2/core.hpp>
#include <string>

#include "duet/error.h"

namespace duet {

// Images with more pixels than this are refused before their pixels are decoded (OpenCV checks
// the header against OPENCV_IO_MAX_IMAGE_PIXELS, which init_runtime sets to this unless the user
// set it): a 100000 x 100000 PNG of a few bytes cannot make duet allocate 30 GB.
constexpr long long kMaxImagePixels = 64LL << 20;

// What decode_rgb throws for an image over kMaxImagePixels (the server answers it with 413).
class ImageTooLarge : public Error {
 public:
  using Error::Error;
};

// Decodes an image file as 8-bit RGB (greyscale is expanded, alpha composited on white so
// transparent sketches stay black-on-white, a JPEG turned upright by its EXIF orientation). Throws
// Error naming the file when it cannot: missing, empty, not an image, truncated (a JPEG without its
// end marker, a PNG short of data) or over kMaxImagePixels. With content_hash, also returns fnv1a of the file's bytes: what seeds its
// test-time views (duet/augment.h) and identifies it in a gallery index, whatever its name.
cv::Mat load_rgb(const std::string& path, uint64_t* content_hash = nullptr);
// The same for bytes already in memory; `name` is what errors call them.
cv::Mat decode_rgb(const std::string& bytes, const std::string& name);

// A line drawing (dark strokes on white) cropped to its strokes' bounding box and centred on a
// white square kFrameMargin times the box's longer side: sketches drawn small or off-centre reach
// the backbone at one scale. An image without strokes comes back unchanged. The square is at most
// kMaxFrameSide pixels a side (a larger box is shrunk into it first): a thin stroke across a long
// image would otherwise make a canvas of gigabytes (a 3 x 60000 PNG of 300 bytes asked for 24 GB).
constexpr double kFrameMargin = 1.5;   // chosen on a validation split (README, "Sketch framing")
constexpr int kMaxFrameSide = 2048;    // far above any backbone's input; Sketchy's 256 px never reach it
cv::Mat frame_strokes(const cv::Mat& rgb);

// RGB uint8 image -> out[3 * size * size] float, CHW, resized to size x size (bilinear),
// (pixel - 128) / 128: the normalisation the TFLite MobileNets were trained with.
void to_chw(const cv::Mat& rgb, int size, float* out);

}  // namespace duet
