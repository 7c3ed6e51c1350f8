#include "duet/image.h"

#include <algorithm>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "duet/error.h"
#include "duet/fileio.h"

namespace duet {

cv::Mat load_rgb(const std::string& path, uint64_t* content_hash) {
  if (!file_exists(path)) fail(path, ": no such image file");
  const std::string bytes = read_file(path);
  if (content_hash) *content_hash = fnv1a(bytes);
  return decode_rgb(bytes, path);
}

cv::Mat decode_rgb(const std::string& bytes, const std::string& path) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  if (n == 0) fail(path, ": empty file (not an image)");
  // libjpeg pads a cut-off JPEG with grey and calls it a warning; its end marker (FF D9) cannot
  // occur inside the entropy-coded data, so its absence near the end means the file was cut.
  const bool jpeg = n >= 2 && b[0] == 0xFF && b[1] == 0xD8;
  if (jpeg) {
    bool eoi = false;
    for (size_t i = n - std::min<size_t>(n, 1024); i + 1 < n && !eoi; ++i) eoi = b[i] == 0xFF && b[i + 1] == 0xD9;
    if (!eoi) fail(path, ": truncated JPEG (no end-of-image marker)");
  }
  // A JPEG is decoded as colour, which makes OpenCV turn it upright by its EXIF orientation (phones
  // store photos sideways with such a tag; IMREAD_UNCHANGED ignores it). A JPEG has no alpha and 8
  // bits, so nothing is lost; other formats keep their alpha and depth.
  cv::Mat raw;
  try {
    raw = cv::imdecode(cv::Mat(1, static_cast<int>(n), CV_8U, const_cast<unsigned char*>(b)),
                       jpeg ? cv::IMREAD_COLOR : cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    if (std::string(e.what()).find("CV_IO_MAX_IMAGE_PIXELS") != std::string::npos)
      throw ImageTooLarge(path + ": image is larger than " + std::to_string(kMaxImagePixels) +
                          " pixels (refused before decoding)");
    // Any other decoder exception leaves `raw` empty: the one message below.
  }
  if (raw.empty() || raw.rows == 0 || raw.cols == 0)
    fail(path, ": cannot decode image (corrupt, truncated or not an image)");
  if (raw.depth() != CV_8U) {
    cv::Mat tmp;
    double scale = raw.depth() == CV_16U ? 1.0 / 257.0 : 1.0;
    raw.convertTo(tmp, CV_8U, scale);
    raw = tmp;
  }
  cv::Mat rgb;
  switch (raw.channels()) {
    case 1:
      cv::cvtColor(raw, rgb, cv::COLOR_GRAY2RGB);
      break;
    case 3:
      cv::cvtColor(raw, rgb, cv::COLOR_BGR2RGB);
      break;
    case 4: {
      // Composite on white: sketches are often black strokes on a transparent background.
      cv::Mat bgra;
      raw.convertTo(bgra, CV_32FC4, 1.0 / 255.0);
      std::vector<cv::Mat> ch;
      cv::split(bgra, ch);
      for (int c = 0; c < 3; ++c) ch[c] = ch[c].mul(ch[3]) + (1.0 - ch[3]);
      cv::Mat bgr;
      cv::merge(std::vector<cv::Mat>{ch[0], ch[1], ch[2]}, bgr);
      bgr.convertTo(bgr, CV_8UC3, 255.0);
      cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
      break;
    }
    default:
      fail(path, ": unsupported image with ", raw.channels(), " channels");
  }
  return rgb;
}

cv::Mat frame_strokes(const cv::Mat& rgb) {
  cv::Mat grey, ink;
  cv::cvtColor(rgb, grey, cv::COLOR_RGB2GRAY);
  cv::threshold(grey, ink, 200, 255, cv::THRESH_BINARY_INV);  // JPEG noise on white stays out
  const cv::Rect box = cv::boundingRect(ink);
  if (box.width < 2 || box.height < 2) return rgb;
  const double want = std::max(box.width, box.height) * kFrameMargin + 2;
  cv::Mat strokes = rgb(box);
  int side = static_cast<int>(want);
  if (side > kMaxFrameSide) {
    const double f = (kMaxFrameSide - 2) / (want - 2);
    cv::Mat small;
    cv::resize(strokes, small,
               cv::Size(std::max(1, cvRound(box.width * f)), std::max(1, cvRound(box.height * f))), 0, 0,
               cv::INTER_AREA);
    strokes = small;
    side = kMaxFrameSide;
  }
  cv::Mat out(side, side, rgb.type(), cv::Scalar(255, 255, 255));
  strokes.copyTo(out(cv::Rect((side - strokes.cols) / 2, (side - strokes.rows) / 2, strokes.cols, strokes.rows)));
  return out;
}

void to_chw(const cv::Mat& rgb, int size, float* out) {
  cv::Mat resized;
  if (rgb.rows != size || rgb.cols != size)
    cv::resize(rgb, resized, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
  else
    resized = rgb;
  const int plane = size * size;
  for (int y = 0; y < size; ++y) {
    const uint8_t* p = resized.ptr<uint8_t>(y);
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < 3; ++c) out[c * plane + y * size + x] = (p[3 * x + c] - 128.0f) / 128.0f;
  }
}

}  // namespace duet
