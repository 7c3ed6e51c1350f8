// Hand-crafted and off-the-shelf baselines. See duet/baseline.h.
#include "duet/baseline.h"

#include <chrono>
#include <cstdio>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

#include "duet/dataset.h"
#include "duet/embed.h"
#include "duet/error.h"
#include "duet/image.h"
#include "duet/progress.h"

namespace duet {

namespace {

std::vector<std::string> labels(const std::vector<Sample>& s) {
  std::vector<std::string> out;
  for (const auto& x : s) out.push_back(x.cls);
  return out;
}

// Sketches: strokes as they are. Photos: Canny edges, inverted to dark-on-white like a sketch.
Matrix hog_matrix(const Dataset& d, const std::vector<Sample>& samples, bool edges) {
  cv::HOGDescriptor hog(cv::Size(128, 128), cv::Size(16, 16), cv::Size(8, 8), cv::Size(8, 8), 9);
  Matrix m(static_cast<int64_t>(samples.size()), static_cast<int64_t>(hog.getDescriptorSize()));
  Progress bar(edges ? "hog photo" : "hog sketch", m.rows);
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t i = 0; i < m.rows; ++i) {
    cv::Mat grey, small;
    cv::cvtColor(load_rgb(d.abs_path(samples[i])), grey, cv::COLOR_RGB2GRAY);
    cv::resize(grey, small, cv::Size(128, 128), 0, 0, cv::INTER_AREA);
    if (edges) {
      cv::GaussianBlur(small, small, cv::Size(3, 3), 0);
      cv::Canny(small, small, 50, 150);
      small = 255 - small;
    }
    std::vector<float> desc;
    hog.compute(small, desc);
    std::copy(desc.begin(), desc.end(), m.row(i));
#pragma omp critical
    bar.tick();
  }
  return m;
}

}  // namespace

std::string BaselineResult::to_json() const {
  std::string j = metrics.to_json();
  j.pop_back();  // the closing brace
  char buf[96];
  std::snprintf(buf, sizeof buf, ", \"wall_s\": %.3f, \"steps\": %lld, \"epochs\": %.3f, \"ledger\": ", wall_s,
                static_cast<long long>(steps), epochs);
  return j + buf + train.to_json() + "}";
}

BaselineResult baseline_hog(const BaselineOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  Dataset d = load_split(opt.split_file, opt.data);
  auto q = d.select("sketch", "test"), g = d.select("photo", "test");
  if (q.empty() || g.empty()) fail(opt.split_file, ": needs test sketches and test photos");
  BaselineResult r;
  r.metrics = evaluate(hog_matrix(d, q, false), hog_matrix(d, g, true), labels(q), labels(g), {});
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

BaselineResult baseline_raw(const BaselineOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  Dataset d = load_split(opt.split_file, opt.data);
  auto q = d.select("sketch", "test"), g = d.select("photo", "test");
  if (q.empty() || g.empty()) fail(opt.split_file, ": needs test sketches and test photos");
  auto enc = open_backbone(opt.backbone);
  auto qe = embed_samples(*enc, d, q, {}, "raw sketch"), ge = embed_samples(*enc, d, g, {}, "raw photo");
  BaselineResult r;
  r.metrics = evaluate(qe.x, ge.x, labels(q), labels(g), {});
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace duet
