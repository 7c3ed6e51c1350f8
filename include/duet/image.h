// duet/image.h — image decoding and the backbone's preprocessing, through OpenCV.
#pragma once

#include <opencv2/core.hpp>
#include <string>

namespace duet {

// Decodes an image file as 8-bit RGB (greyscale is expanded, alpha composited on white so
// transparent sketches stay black-on-white). Throws Error naming the file when it cannot.
cv::Mat load_rgb(const std::string& path);

// RGB uint8 image -> out[3 * size * size] float, CHW, resized to size x size (bilinear),
// (pixel - 128) / 128: the normalisation the TFLite MobileNets were trained with.
void to_chw(const cv::Mat& rgb, int size, float* out);

}  // namespace duet
