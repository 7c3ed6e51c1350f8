// duet tsne — a 2-D map of one or more embedding files: SVG, PNG or JSON, points coloured by
// class and shaped by domain.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "cli/commands.h"
#include "duet/embeddings.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/progress.h"
#include "duet/tsne.h"

namespace duet::cli {

namespace {
struct Args {
  std::vector<std::string> emb;
  std::string out;
  TsneOptions opt;
  int64_t max_points = 20000;
};

// Colour of class c of n: hues spread around the wheel, alternating two lightnesses so that
// neighbouring classes differ. Returns 8-bit RGB.
cv::Vec3b class_colour(size_t c, size_t n) {
  cv::Mat hsv(
      1, 1, CV_8UC3,
      cv::Scalar(static_cast<int>(180.0 * c / std::max<size_t>(n, 1)), 200, c % 2 ? 170 : 230));
  cv::Mat rgb;
  cv::cvtColor(hsv, rgb, cv::COLOR_HSV2RGB);
  return rgb.at<cv::Vec3b>(0, 0);
}

struct Plot {
  std::vector<float> x, y;       // in [0, 1]
  std::vector<size_t> cls, dom;  // indices into the name lists
  std::vector<std::string> classes, domains, paths;
};

Plot layout(const Matrix& m, const std::vector<ManifestRow>& rows) {
  Plot p;
  std::map<std::string, size_t> ci, di;
  for (const auto& r : rows) ci.emplace(r.cls, 0), di.emplace(r.domain, 0);
  for (auto& [name, i] : ci) i = p.classes.size(), p.classes.push_back(name);
  for (auto& [name, i] : di) i = p.domains.size(), p.domains.push_back(name);
  float x0 = HUGE_VALF, x1 = -HUGE_VALF, y0 = HUGE_VALF, y1 = -HUGE_VALF;
  for (int64_t i = 0; i < m.rows; ++i) {
    x0 = std::min(x0, m.row(i)[0]), x1 = std::max(x1, m.row(i)[0]);
    y0 = std::min(y0, m.row(i)[1]), y1 = std::max(y1, m.row(i)[1]);
  }
  const float s = std::max({x1 - x0, y1 - y0, 1e-12f});
  for (int64_t i = 0; i < m.rows; ++i) {
    p.x.push_back((m.row(i)[0] - x0) / s);
    p.y.push_back((m.row(i)[1] - y0) / s);
    p.cls.push_back(ci[rows[i].cls]);
    p.dom.push_back(di[rows[i].domain]);
    p.paths.push_back(rows[i].path);
  }
  return p;
}

// Shapes by domain: circle, square, triangle, diamond, then around again.
std::string svg(const Plot& p) {
  const int W = 900, M = 20;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W + 200 << "\" height=\"" << W
    << "\" viewBox=\"0 0 " << W + 200 << " " << W
    << "\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  auto shape = [&](size_t d, double cx, double cy, const cv::Vec3b& c) {
    char col[16];
    std::snprintf(col, sizeof col, "#%02x%02x%02x", c[0], c[1], c[2]);
    const double r = 3.5;
    switch (d % 4) {
      case 0:
        o << "<circle cx=\"" << cx << "\" cy=\"" << cy << "\" r=\"" << r << "\" fill=\"" << col
          << "\"/>";
        break;
      case 1:
        o << "<rect x=\"" << cx - r << "\" y=\"" << cy - r << "\" width=\"" << 2 * r
          << "\" height=\"" << 2 * r << "\" fill=\"" << col << "\"/>";
        break;
      case 2:
        o << "<polygon points=\"" << cx << "," << cy - r - 1 << " " << cx - r - 1 << "," << cy + r
          << " " << cx + r + 1 << "," << cy + r << "\" fill=\"" << col << "\"/>";
        break;
      default:
        o << "<polygon points=\"" << cx << "," << cy - r - 1 << " " << cx + r + 1 << "," << cy
          << " " << cx << "," << cy + r + 1 << " " << cx - r - 1 << "," << cy << "\" fill=\"" << col
          << "\"/>";
    }
  };
  for (size_t i = 0; i < p.x.size(); ++i) {
    shape(p.dom[i], M + p.x[i] * (W - 2 * M), M + p.y[i] * (W - 2 * M),
          class_colour(p.cls[i], p.classes.size()));
    o << "\n";
  }
  // Legend: the domains' shapes, then (up to 40) the classes' colours.
  double ly = 30;
  for (size_t d = 0; d < p.domains.size(); ++d, ly += 20) {
    shape(d, W + 20, ly, cv::Vec3b(60, 60, 60));
    o << "<text x=\"" << W + 32 << "\" y=\"" << ly + 4
      << "\" font-family=\"sans-serif\" font-size=\"13\">" << p.domains[d] << "</text>\n";
  }
  ly += 10;
  for (size_t c = 0; c < std::min<size_t>(p.classes.size(), 40); ++c, ly += 16) {
    shape(0, W + 20, ly, class_colour(c, p.classes.size()));
    o << "<text x=\"" << W + 32 << "\" y=\"" << ly + 4
      << "\" font-family=\"sans-serif\" font-size=\"11\">" << p.classes[c] << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

std::string png(const Plot& p) {
  const int W = 900, M = 20;
  cv::Mat img(W, W, CV_8UC3, cv::Scalar(255, 255, 255));
  for (size_t i = 0; i < p.x.size(); ++i) {
    const cv::Vec3b c = class_colour(p.cls[i], p.classes.size());
    const cv::Scalar bgr(c[2], c[1], c[0]);
    const cv::Point at(static_cast<int>(M + p.x[i] * (W - 2 * M)),
                       static_cast<int>(M + p.y[i] * (W - 2 * M)));
    switch (p.dom[i] % 4) {
      case 0:
        cv::circle(img, at, 3, bgr, cv::FILLED, cv::LINE_AA);
        break;
      case 1:
        cv::rectangle(img, at - cv::Point(3, 3), at + cv::Point(3, 3), bgr, cv::FILLED);
        break;
      case 2: {
        std::vector<cv::Point> t = {at + cv::Point(0, -4), at + cv::Point(-4, 3),
                                    at + cv::Point(4, 3)};
        cv::fillConvexPoly(img, t, bgr, cv::LINE_AA);
        break;
      }
      default: {
        std::vector<cv::Point> t = {at + cv::Point(0, -4), at + cv::Point(4, 0),
                                    at + cv::Point(0, 4), at + cv::Point(-4, 0)};
        cv::fillConvexPoly(img, t, bgr, cv::LINE_AA);
      }
    }
  }
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", img, bytes)) fail("cannot encode the map as PNG");
  return std::string(bytes.begin(), bytes.end());
}

void run_tsne(const Args& a) {
  const std::string ext = a.out.size() > 4 ? a.out.substr(a.out.size() - 4) : "";
  const std::string ext5 = a.out.size() > 5 ? a.out.substr(a.out.size() - 5) : "";
  if (ext != ".svg" && ext != ".png" && ext5 != ".json")
    fail("-o ", a.out, ": the map is written as .svg, .png or .json");
  // The files, stacked: every one must have the same width (one space).
  Embeddings all;
  for (const auto& f : a.emb) {
    Embeddings e = read_embeddings(f);
    if (all.x.rows == 0) {
      all = std::move(e);
      continue;
    }
    if (e.x.cols != all.x.cols)
      fail(f, ": ", e.x.cols, "-d rows, but ", a.emb[0], " has ", all.x.cols,
           "-d; a map shows one space");
    all.x.data.insert(all.x.data.end(), e.x.data.begin(), e.x.data.end());
    all.x.rows += e.x.rows;
    all.rows.insert(all.rows.end(), e.rows.begin(), e.rows.end());
  }
  if (all.x.rows < 2) fail("a map needs at least 2 rows");
  // Evenly spaced rows beyond max_points: the cost grows as n log n, the picture does not improve.
  if (a.max_points > 1 && all.x.rows > a.max_points) {
    std::vector<size_t> keep;
    for (int64_t i = 0; i < a.max_points; ++i)
      keep.push_back(static_cast<size_t>(i * all.x.rows / a.max_points));
    log_line("t-SNE: " + std::to_string(a.max_points) + " of " + std::to_string(all.x.rows) +
             " rows (--max-points)");
    all = take_rows(all, keep);
  }
  auto t0 = std::chrono::steady_clock::now();
  Matrix y = tsne(all.x, a.opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const Plot p = layout(y, all.rows);
  std::string bytes;
  if (ext == ".svg") {
    bytes = svg(p);
  } else if (ext == ".png") {
    bytes = png(p);
  } else {
    nlohmann::json j = {
        {"perplexity", a.opt.perplexity}, {"iterations", a.opt.iterations}, {"seed", a.opt.seed},
        {"theta", a.opt.theta},           {"classes", p.classes},           {"domains", p.domains}};
    for (size_t i = 0; i < p.x.size(); ++i)
      j["points"].push_back({{"x", p.x[i]},
                             {"y", p.y[i]},
                             {"class", p.cls[i]},
                             {"domain", p.dom[i]},
                             {"path", p.paths[i]}});
    bytes = j.dump() + "\n";
  }
  write_file_atomic(a.out, bytes);
  std::printf("%s: %lld points, %zu classes, %zu domains, t-SNE %.1f s\n", a.out.c_str(),
              static_cast<long long>(y.rows), p.classes.size(), p.domains.size(), secs);
}
}  // namespace

void register_tsne(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand(
      "tsne", "a 2-D t-SNE map of embedding files (coloured by class, shaped by domain)");
  c->add_option("--emb", a->emb,
                "embeddings .npy with manifest; repeat to map several files in one space")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("-o,--out", a->out,
                "map to write: .svg, .png or .json (points in [0, 1] with class and domain)")
      ->required();
  c->add_option("--perplexity", a->opt.perplexity, "effective neighbours per point")
      ->capture_default_str()
      ->check(positive);
  c->add_option("--iterations", a->opt.iterations, "gradient steps (the first 250 exaggerated)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  c->add_option("--theta", a->opt.theta, "Barnes-Hut accuracy (0 = exact)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 2.0));
  c->add_option("--pca", a->opt.pca_dims, "PCA to this many dimensions first (0 = none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  c->add_option("--seed", a->opt.seed, "random seed of the starting map")->capture_default_str();
  c->add_option("--max-points", a->max_points, "map evenly spaced rows beyond this many")
      ->capture_default_str()
      ->check(positive);
  c->callback([a] {
    if (a->opt.exaggeration_iterations > a->opt.iterations)
      a->opt.exaggeration_iterations = a->opt.iterations / 4;
    run_tsne(*a);
  });
}

}  // namespace duet::cli
