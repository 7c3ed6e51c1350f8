#include "duet/augment.h"

#include <opencv2/imgproc.hpp>

#include "duet/image.h"

namespace duet {

namespace {
// splitmix64: one stream per (seed, view, image) without shared generator state.
struct Rng {
  uint64_t x;
  uint64_t next() {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform(double a, double b) {
    return a + (b - a) * (next() >> 11) * (1.0 / 9007199254740992.0);
  }
};
}  // namespace

cv::Mat augment_view(const cv::Mat& rgb, DomainKind kind, int view, uint64_t seed) {
  cv::Mat out;
  if (view == 0) return rgb;
  if (view == 1) {
    cv::flip(rgb, out, 1);
    return out;
  }
  Rng r{seed * 0x100000001B3ull + static_cast<uint64_t>(view) * 0x9E3779B1ull};
  r.next();
  out = rgb.clone();
  if (r.uniform(0, 1) < 0.5) cv::flip(out, out, 1);
  const double w = out.cols, h = out.rows;
  if (kind == DomainKind::Drawing) {
    double angle = r.uniform(-10, 10), scale = r.uniform(0.9, 1.1);
    cv::Mat m = cv::getRotationMatrix2D(cv::Point2f(w / 2, h / 2), angle, scale);
    m.at<double>(0, 2) += r.uniform(-0.06, 0.06) * w;
    m.at<double>(1, 2) += r.uniform(-0.06, 0.06) * h;
    cv::warpAffine(out, out, m, out.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT,
                   cv::Scalar(255, 255, 255));
    if (r.uniform(0, 1) < 0.5) {
      int k = r.uniform(0, 1) < 0.5 ? 2 : 3;
      cv::erode(out, out,
                cv::getStructuringElement(cv::MORPH_RECT, cv::Size(k, k)));  // dark strokes grow
    }
  } else {
    double side = r.uniform(0.7, 1.0);
    int cw = std::max(1, static_cast<int>(w * side)), ch = std::max(1, static_cast<int>(h * side));
    int x0 = static_cast<int>(r.uniform(0, w - cw + 1)),
        y0 = static_cast<int>(r.uniform(0, h - ch + 1));
    x0 = std::min(x0, out.cols - cw);
    y0 = std::min(y0, out.rows - ch);
    out = out(cv::Rect(x0, y0, cw, ch)).clone();
    double contrast = r.uniform(0.8, 1.2), brightness = r.uniform(-0.2, 0.2) * 255;
    out.convertTo(out, -1, contrast, brightness + (1 - contrast) * 128);
  }
  return out;
}

uint64_t view_seed(uint64_t run_seed, uint64_t content_hash) { return run_seed ^ content_hash; }

void view_inputs(const cv::Mat& rgb, DomainKind kind, int views, uint64_t seed, int size,
                 float* out) {
  const size_t per = 3 * static_cast<size_t>(size) * size;
  for (int v = 0; v < views; ++v) to_chw(augment_view(rgb, kind, v, seed), size, out + v * per);
}

}  // namespace duet
