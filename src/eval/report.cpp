// Retrieval curves, example queries and the HTML report. See duet/report.h.
#include "duet/report.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "duet/embeddings.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/image.h"
#include "duet/inference.h"
#include "duet/progress.h"
#include "duet/tsne.h"
#include "serve/web_assets.h"

namespace duet {

namespace {
using json = nlohmann::json;

std::vector<double> average_precisions(const std::vector<std::vector<int64_t>>& ranks) {
  std::vector<double> ap;
  for (const auto& r : ranks) {
    double s = 0;
    for (size_t i = 0; i < r.size(); ++i) s += static_cast<double>(i + 1) / r[i];
    ap.push_back(r.empty() ? -1.0 : s / r.size());
  }
  return ap;
}
}  // namespace

std::string retrieval_detail(const std::vector<std::vector<int64_t>>& ranks,
                             const std::vector<std::string>& query_classes, int64_t gallery) {
  if (ranks.size() != query_classes.size()) fail("internal: one class per query");
  const std::vector<double> ap = average_precisions(ranks);
  json j;
  // Interpolated precision at 21 recall levels, averaged over the queries with relevant items.
  std::vector<double> levels, prec(21, 0.0);
  for (int l = 0; l <= 20; ++l) levels.push_back(l / 20.0);
  std::vector<int64_t> ks;
  for (int64_t k : {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000})
    if (k < gallery) ks.push_back(k);
  ks.push_back(gallery);
  std::vector<double> mapk(ks.size(), 0.0);
  int64_t counted = 0;
  for (const auto& r : ranks) {
    if (r.empty()) continue;
    ++counted;
    const double R = static_cast<double>(r.size());
    // best[i]: the best precision at the i-th relevant item or later
    std::vector<double> best(r.size());
    for (size_t i = r.size(); i-- > 0;)
      best[i] = std::max(static_cast<double>(i + 1) / r[i], i + 1 < r.size() ? best[i + 1] : 0.0);
    for (int l = 0; l <= 20; ++l) {
      // the first relevant item at which recall (i+1)/R reaches the level
      const size_t i = static_cast<size_t>(std::max(0.0, std::ceil(levels[l] * R - 1e-9) - 1));
      prec[l] += best[std::min(i, r.size() - 1)];
    }
    for (size_t k = 0; k < ks.size(); ++k) {
      double s = 0;
      size_t hits = 0;
      for (; hits < r.size() && r[hits] <= ks[k]; ++hits)
        s += static_cast<double>(hits + 1) / r[hits];
      mapk[k] += s / std::min<double>(R, static_cast<double>(ks[k]));
    }
  }
  for (auto& p : prec) p = counted ? p / counted : 0;
  for (auto& m : mapk) m = counted ? m / counted : 0;
  j["pr"] = {{"recall", levels}, {"precision", prec}};
  j["map_at"] = {{"k", ks}, {"map", mapk}};
  std::map<std::string, std::pair<double, int64_t>> per;
  for (size_t q = 0; q < ap.size(); ++q)
    if (ap[q] >= 0) per[query_classes[q]].first += ap[q], per[query_classes[q]].second++;
  std::vector<std::pair<double, std::string>> order;
  for (const auto& [c, v] : per) order.push_back({-v.first / v.second, c});
  std::sort(order.begin(), order.end());
  j["per_class"] = json::array();
  for (const auto& [neg, c] : order)
    j["per_class"].push_back({{"class", c}, {"ap", -neg}, {"queries", per[c].second}});
  j["ap"] = ap;
  return j.dump();
}

std::vector<int64_t> example_queries(const std::vector<std::vector<int64_t>>& ranks) {
  const std::vector<double> ap = average_precisions(ranks);
  std::vector<int64_t> q;
  for (size_t i = 0; i < ap.size(); ++i)
    if (ap[i] >= 0) q.push_back(static_cast<int64_t>(i));
  std::stable_sort(q.begin(), q.end(), [&](int64_t a, int64_t b) { return ap[a] > ap[b]; });
  if (q.size() <= 3) return q;
  return {q.front(), q[q.size() / 2], q.back()};
}

namespace {

std::string base64(const std::vector<uchar>& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (size_t i = 0; i < in.size(); i += 3) {
    const uint32_t v = (uint32_t(in[i]) << 16) |
                       (i + 1 < in.size() ? uint32_t(in[i + 1]) << 8 : 0) |
                       (i + 2 < in.size() ? uint32_t(in[i + 2]) : 0);
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += i + 1 < in.size() ? t[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? t[v & 63] : '=';
  }
  return out;
}

// A 96-px JPEG of an image file as a data: URL ("" when it cannot be read: the page says so).
std::string thumb(const std::string& path) {
  try {
    cv::Mat rgb = load_rgb(path), small, bgr;
    const double s = 96.0 / std::max(rgb.cols, rgb.rows);
    cv::resize(rgb, small, cv::Size(std::max(1, int(rgb.cols * s)), std::max(1, int(rgb.rows * s))),
               0, 0, cv::INTER_AREA);
    cv::cvtColor(small, bgr, cv::COLOR_RGB2BGR);
    std::vector<uchar> bytes;
    cv::imencode(".jpg", bgr, bytes, {cv::IMWRITE_JPEG_QUALITY, 80});
    return "data:image/jpeg;base64," + base64(bytes);
  } catch (const Error& e) {
    log_line(std::string("report: ") + e.what());
    return "";
  }
}

// The rows of e whose path is in `paths`, evenly thinned to at most max rows.
Embeddings pick(const Embeddings& e, const std::set<std::string>& paths, int64_t max) {
  std::vector<size_t> rows;
  for (size_t i = 0; i < e.rows.size(); ++i)
    if (paths.count(e.rows[i].path)) rows.push_back(i);
  if (max > 0 && static_cast<int64_t>(rows.size()) > max) {
    std::vector<size_t> thin;
    for (int64_t i = 0; i < max; ++i)
      thin.push_back(rows[static_cast<size_t>(i) * rows.size() / max]);
    rows = std::move(thin);
  }
  return take_rows(e, rows);
}

// One t-SNE map of the stacked sets, as the page draws it: coordinates in [0, 1], class and
// domain indices into its name lists.
json tsne_map(const std::string& title, const std::vector<Embeddings>& sets,
              const ReportOptions& opt) {
  Matrix x;
  std::vector<ManifestRow> rows;
  for (const auto& e : sets) {
    if (x.rows == 0) x.cols = e.x.cols;
    x.data.insert(x.data.end(), e.x.data.begin(), e.x.data.end());
    x.rows += e.x.rows;
    rows.insert(rows.end(), e.rows.begin(), e.rows.end());
  }
  json m = {{"title", title}};
  if (x.rows < 5) {
    m["note"] = "too few points";
    return m;
  }
  TsneOptions to;
  to.seed = opt.seed;
  to.perplexity = std::min(30.0, (x.rows - 1) / 3.0);
  const Matrix y = tsne(x, to);
  std::map<std::string, int> ci, di;
  for (const auto& r : rows) ci.emplace(r.cls, 0), di.emplace(r.domain, 0);
  std::vector<std::string> classes, domains;
  for (auto& [c, i] : ci) i = static_cast<int>(classes.size()), classes.push_back(c);
  for (auto& [d, i] : di) i = static_cast<int>(domains.size()), domains.push_back(d);
  // Scaled to [0, 1] by the 1st and 99th percentiles, the rest clamped: a few far-off points
  // would otherwise squeeze the map into a corner.
  auto range = [&](int c) {
    std::vector<float> v;
    for (int64_t i = 0; i < y.rows; ++i) v.push_back(y.row(i)[c]);
    std::sort(v.begin(), v.end());
    return std::make_pair(v[v.size() / 100], v[v.size() - 1 - v.size() / 100]);
  };
  const auto [x0, x1] = range(0);
  const auto [y0, y1] = range(1);
  const float s = std::max({x1 - x0, y1 - y0, 1e-12f});
  auto unit = [&](float v, float lo, float span) {
    return std::round(std::clamp((v - lo) / s + (1 - span / s) / 2, -0.02f, 1.02f) * 1e4f) / 1e4f;
  };
  std::vector<float> px, py;
  std::vector<int> pc, pd;
  for (int64_t i = 0; i < y.rows; ++i) {
    px.push_back(unit(y.row(i)[0], x0, x1 - x0));
    py.push_back(unit(y.row(i)[1], y0, y1 - y0));
    pc.push_back(ci[rows[i].cls]);
    pd.push_back(di[rows[i].domain]);
  }
  m["x"] = px, m["y"] = py, m["c"] = pc, m["d"] = pd, m["classes"] = classes,
  m["domains"] = domains;
  return m;
}

// One split's part of the page: its metrics, curves, examples (with thumbnails) and maps.
json split_section(const ReportOptions& opt, const std::string& name, const json& metrics) {
  json s = {{"name", name}, {"metrics", metrics}};
  const std::string dir = opt.run + "/" + name;
  const std::string eval_file = dir + "/eval.json";
  if (!file_exists(eval_file)) {
    s["note"] = "no " + eval_file + ": rerun `duet run` with this duet to get curves and examples";
    return s;
  }
  json ev;
  try {
    ev = json::parse(read_file(eval_file));
  } catch (const json::exception&) {
    fail(eval_file, ": not valid JSON (a damaged run folder)");
  }
  s["detail"] = json::object();
  for (auto& [qd, d] : ev.at("by_query").items()) {
    json e = d;
    e.erase("ap");
    for (auto& x : e["examples"]) {
      x["thumb"] = thumb(x.at("query").get<std::string>());
      for (auto& r : x["results"])
        r["thumb"] =
            thumb(ev.at("root").get<std::string>() + "/" + r.at("path").get<std::string>());
    }
    s["detail"][qd] = e;
  }
  // Maps of the test images: each domain's Phase I embedding, all of them together, and the
  // Phase II codes of all of them in the shared space.
  const auto& test = ev.at("test");
  std::vector<Embeddings> p1, p2;
  std::unique_ptr<Mapper> mapper;
  const std::string mapper_file = dir + "/mapper.pt";
  if (file_exists(mapper_file)) mapper = open_mapper(mapper_file);
  std::set<std::string> learnt;  // the classes the encoders were trained on
  if (file_exists(dir + "/model/manifest.json")) {
    const json manifest = json::parse(read_file(dir + "/model/manifest.json"));
    for (const auto& c : manifest.at("classes")) learnt.insert(c.get<std::string>());
  }
  size_t known = 0, total = 0;
  for (const auto& [domain, paths] : test.items()) {
    const std::string f = dir + "/" + domain + ".npy";
    if (!file_exists(f)) continue;
    const std::set<std::string> want(paths.begin(), paths.end());
    Embeddings e =
        pick(read_embeddings(f), want, opt.tsne_points / std::max<size_t>(1, test.size()));
    if (e.x.rows == 0) continue;
    p1.push_back(std::move(e));
    for (const auto& r : p1.back().rows) known += learnt.count(r.cls), ++total;
    if (mapper) {
      Embeddings c = p1.back();
      c.x = mapper->map(domain, c.x);
      p2.push_back(std::move(c));
    }
  }
  const std::string seen = known == total ? "seen classes"
                           : known == 0   ? "unseen classes"
                                          : "seen and unseen classes";
  s["maps"] = json::array();
  for (const auto& e : p1)
    s["maps"].push_back(
        tsne_map("Phase I: " + e.rows.at(0).domain + " embeddings (test, " + seen + ")", {e}, opt));
  if (p1.size() > 1)
    s["maps"].push_back(
        tsne_map("Phase I: all domains, each its own encoder (" + seen + ")", p1, opt));
  if (!p2.empty())
    s["maps"].push_back(tsne_map("Phase II: the shared code space (" + seen + ")", p2, opt));
  return s;
}

std::string asset(const char* path) {
  for (size_t i = 0; i < kReportAssetsCount; ++i)
    if (std::string(kReportAssets[i].path) == path)
      return std::string(reinterpret_cast<const char*>(kReportAssets[i].data),
                         kReportAssets[i].size);
  fail("internal: no report asset ", path);
}

// Text inside a <script> element must not close it early: in script code, "</script" becomes
// "<\/script" (the same in any string or regular expression, where it can only occur); in JSON,
// every "<" becomes "\u003c" (JSON has "<" inside strings only).
std::string script_safe(std::string s) {
  for (size_t at = 0; (at = s.find("</", at)) != std::string::npos; at += 3) {
    std::string tag = s.substr(at + 2, 6);
    std::transform(tag.begin(), tag.end(), tag.begin(), ::tolower);
    if (tag == "script") s.replace(at, 2, "<\\/");
  }
  return s;
}
std::string json_safe(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '<' ? std::string("\\u003c") : std::string(1, c);
  return o;
}

}  // namespace

std::string write_report(const ReportOptions& opt) {
  const std::string mf = opt.run + "/metrics.json";
  if (!file_exists(mf)) fail(opt.run, ": no metrics.json (is it a `duet run` output folder?)");
  json metrics;
  try {
    metrics = json::parse(read_file(mf));
  } catch (const json::exception&) {
    fail(mf, ": not valid JSON");
  }
  json data = {{"run", opt.run},
               {"dataset", metrics.value("dataset", "")},
               {"config", metrics.value("config", "")},
               {"seed", metrics.value("seed", 0)},
               {"quick", metrics.value("quick", false)},
               {"splits", json::array()}};
  for (const auto& [name, s] : metrics.at("splits").items()) {
    log_line("report: split " + name);
    data["splits"].push_back(split_section(opt, name, s));
  }
  const std::string tf = !opt.tradeoff.empty() ? opt.tradeoff : opt.run + "/tradeoff.json";
  if (file_exists(tf)) {
    try {
      data["tradeoff"] = json::parse(read_file(tf)).at("rows");
    } catch (const json::exception&) {
      fail(tf, ": not a bench/tradeoff.sh JSON file (no rows)");
    }
  } else if (!opt.tradeoff.empty()) {
    fail(opt.tradeoff, ": no such file");
  }
  std::string page = asset("/report.html");
  auto put = [&](const std::string& mark, const std::string& text) {
    const auto at = page.find(mark);
    if (at == std::string::npos) fail("internal: report template lacks ", mark);
    page.replace(at, mark.size(), text);
  };
  // Last mark first: each text goes in after the marks still to fill.
  put("/*REPORT_JS*/", script_safe(asset("/report.js")));
  put("/*DATA*/", "const DATA = " + json_safe(data.dump()) + ";");
  put("/*CHART_JS*/", script_safe(asset("/chart.min.js")));
  const std::string out = opt.out.empty() ? opt.run + "/report.html" : opt.out;
  write_file_atomic(out, page);
  return out;
}

}  // namespace duet
