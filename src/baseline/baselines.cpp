// Hand-crafted and off-the-shelf baselines. See duet/baseline.h.
#include <chrono>
#include <cstdio>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

#include "duet/baseline.h"
#include "duet/dataset.h"
#include "duet/domain.h"
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

// Drawings: strokes as they are. Images: Canny edges, inverted to dark-on-white like a drawing.
Matrix hog_matrix(const Dataset& d, const std::vector<Sample>& samples, DomainKind kind) {
  const bool edges = kind == DomainKind::Image;
  cv::HOGDescriptor hog(cv::Size(128, 128), cv::Size(16, 16), cv::Size(8, 8), cv::Size(8, 8), 9);
  Matrix m(static_cast<int64_t>(samples.size()), static_cast<int64_t>(hog.getDescriptorSize()));
  Progress bar("hog " + samples.at(0).domain, m.rows);
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
  std::snprintf(buf, sizeof buf,
                ", \"wall_s\": %.3f, \"steps\": %lld, \"epochs\": %.3f, \"ledger\": ", wall_s,
                static_cast<long long>(steps), epochs);
  return j + buf + train.to_json() + "}";
}

BaselineSides baseline_sides(const Dataset& d, const BaselineOptions& opt) {
  BaselineSides t;
  t.doms = resolve_domains(d,
                           opt.query_domain.empty() ? std::vector<std::string>{}
                                                    : std::vector<std::string>{opt.query_domain},
                           opt.gallery_domain);
  t.q = d.select(t.doms.query[0], "test");
  t.g = d.select(t.doms.gallery, "test");
  if (t.q.empty() || t.g.empty())
    fail(opt.split_file, ": needs test ", t.doms.query[0], " and test ", t.doms.gallery, " images");
  return t;
}

void BaselineSides::decide_kinds(const Dataset& d) {
  auto kinds = duet::decide_kinds(d, doms.all(), {});
  qk = kinds.at(doms.query[0]);
  gk = kinds.at(doms.gallery);
}

BaselineResult baseline_hog(const BaselineOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  Dataset d = load_split(opt.split_file, opt.data);
  BaselineSides t = baseline_sides(d, opt);
  t.decide_kinds(d);
  BaselineResult r;
  r.metrics =
      evaluate(hog_matrix(d, t.q, t.qk), hog_matrix(d, t.g, t.gk), labels(t.q), labels(t.g), {});
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

BaselineResult baseline_raw(const BaselineOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  Dataset d = load_split(opt.split_file, opt.data);
  BaselineSides t = baseline_sides(d, opt);
  auto enc = open_backbone(opt.backbone);
  auto qe = embed_samples(*enc, d, t.q, {}, "raw " + t.q[0].domain),
       ge = embed_samples(*enc, d, t.g, {}, "raw " + t.g[0].domain);
  BaselineResult r;
  r.metrics = evaluate(qe.x, ge.x, labels(t.q), labels(t.g), {});
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace duet
