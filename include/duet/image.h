// duet/image.h — image decoding and the backbone's preprocessing, through OpenCV.
#pragma once

#include <opencv2/core.hpp>
#include <string>

namespace duet {

// Decodes an image file as 8-bit RGB (greyscale is expanded, alpha composited on white so
// transparent sketches stay black-on-white). Throws Error naming the file when it cannot.
cv::Mat load_rgb(const std::string& path);

// A line drawing (dark strokes on white) cropped to its strokes' bounding box and centred on a
// white square kFrameMargin times the box's longer side: sketches drawn small or off-centre reach
// the backbone at one scale. An image without strokes comes back unchanged.
constexpr double kFrameMargin = 1.5;   // chosen on a validation split (README, "Sketch framing")
cv::Mat frame_strokes(const cv::Mat& rgb);

// RGB uint8 image -> out[3 * size * size] float, CHW, resized to size x size (bilinear),
// (pixel - 128) / 128: the normalisation the TFLite MobileNets were trained with.
void to_chw(const cv::Mat& rgb, int size, float* out);

}  // namespace duet
