// bench/search_latency — what one `duet search` query costs as the gallery grows, and how much of
// the exhaustive ranking the candidate path keeps. Prints a table and writes JSON.
//
//   search_latency [--index G] [--sizes 100000,1000000] [--queries 200] [--recall-queries 20]
//                  [--model DIR --query IMG] [--json out.json]
//
// Rows: the gallery of a real index (--index: its real codes, posteriors and graph, queried with
// its own rows' posteriors and codes mapped as photos), then synthetic galleries with the real
// dimensions (125 classes, 125-d codes; posteriors peaked on each item's class, the graph linking
// items of one class; ranked with the default config's options). Each row: the Searcher's build
// time, its memory per photo (the codes and posteriors it holds and what it builds; the graph
// not), p50/p99 latency of one search(k = 10) without the query's CNN pass, and recall@10 of that
// ranking against the same Searcher's exhaustive scoring of every row. --kind forces the
// candidate indexes (ivf-flat, ivf-sq8) to compare them on one size. The CNN pass of one query
// image through a model (--model, --query) is timed separately.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "duet/error.h"
#include "duet/gallery.h"
#include "duet/image.h"
#include "duet/model.h"
#include "duet/runtime.h"
#include "duet/search.h"
#include "synthetic.h"

using namespace duet;
using Clock = std::chrono::steady_clock;

using namespace duet::bench;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double rss_bytes() {
  std::ifstream f("/proc/self/statm");
  double pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * 4096.0;
}

// Query i alone, as `duet search` sends one.
QueryArrays query(const QueryArrays& q, int64_t i) {
  QueryArrays one{Matrix(1, q.post.cols), Matrix(1, q.code.cols), Matrix(1, q.bridge.cols)};
  std::copy(q.post.row(i), q.post.row(i) + q.post.cols, one.post.data.begin());
  std::copy(q.code.row(i), q.code.row(i) + q.code.cols, one.code.data.begin());
  std::copy(q.bridge.row(i), q.bridge.row(i) + q.bridge.cols, one.bridge.data.begin());
  return one;
}

// The Searcher over g (moved in: at 10M photos there is no room for a second copy), timed.
nlohmann::json row(const std::string& what, GalleryArrays g,
                   const std::shared_ptr<const GalleryGraph>& graph, const QueryArrays& q,
                   int64_t recall_queries, const RankOptions& rank, const ScaleOptions& scale) {
  const int64_t n = g.code.rows, nq = q.code.rows, k = 10;
  // What the searcher holds: the rows it is given, and what it builds over them.
  const double given =
      4.0 * static_cast<double>(n) * static_cast<double>(g.code.cols + g.post.cols);
  const double rss0 = rss_bytes();
  auto t0 = Clock::now();
  const std::shared_ptr<const GalleryGraph> used = rank.diffusion ? graph : nullptr;
  Searcher s(std::move(g), rank, used, scale);
  const double build_s = seconds_since(t0);
  std::fprintf(stderr, "search_latency: %lld photos: searcher built in %.1f s\n",
               static_cast<long long>(n), build_s);
  const double bytes = std::max(0.0, rss_bytes() - rss0 + given) / static_cast<double>(n);
  std::vector<double> ms;
  std::vector<Ranking> got;
  s.search(query(q, 0),
           k);  // untimed: the first touch of the gallery's pages is not a query's cost
  for (int64_t i = 0; i < nq; ++i) {
    const QueryArrays one = query(q, i);
    auto t = Clock::now();
    got.push_back(s.search(one, k)[0]);
    ms.push_back(1000 * seconds_since(t));
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) {
    return ms[std::min<size_t>(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
  };
  // Recall against the same searcher's exhaustive scoring of every row (what it ranks by below
  // the exact limit), the top ten with ties by lower row.
  double recall = 1.0;
  if (s.index_type() != "exact") {
    const int64_t m = std::min(nq, recall_queries);
    double hit = 0;
    std::vector<float> all(static_cast<size_t>(n));
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t i = 0; i < m; ++i) {
      const auto tr = Clock::now();
      s.scores(query(q, i))(0, 1, all.data());
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
        return all[a] > all[b] || (all[a] == all[b] && a < b);
      });
      std::fprintf(stderr, "search_latency: exhaustive reference %lld/%lld: %.1f s\n",
                   static_cast<long long>(i + 1), static_cast<long long>(m), seconds_since(tr));
      std::set<int64_t> want(order.begin(), order.begin() + k);
      for (const auto& h : got[i].hits) hit += want.count(h.row);
    }
    recall = hit / static_cast<double>(m * k);
  }
  nlohmann::json r = {{"gallery", n},
                      {"data", what},
                      {"index", s.index_type()},
                      {"build_s", build_s},
                      {"bytes_per_photo", bytes},
                      {"p50_ms", pct(0.5)},
                      {"p99_ms", pct(0.99)},
                      {"recall_at_10", recall}};
  std::printf("%-10lld %-10s %-28s %9.2f %14.0f %9.2f %9.2f %9.3f\n", static_cast<long long>(n),
              what.c_str(), s.index_type().c_str(), build_s, bytes, pct(0.5), pct(0.99), recall);
  std::fflush(stdout);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  init_runtime();
  CLI::App app{"search latency and recall of duet's Searcher by gallery size"};
  std::string index, model_dir, query, json_out;
  std::vector<int64_t> sizes = {100000, 1000000};
  int64_t queries = 200, recall_queries = 200;
  bool no_diffusion = false;
  ScaleOptions scale;
  app.add_option("--index", index, "a gallery index from `duet index` (the real row)");
  app.add_option("--sizes", sizes, "synthetic gallery sizes")->delimiter(',');
  app.add_option("--queries", queries, "timed queries per row");
  app.add_option("--recall-queries", recall_queries, "queries checked against exhaustive scoring");
  app.add_option("--model", model_dir, "model folder, to time one query's CNN pass");
  app.add_option("--query", query, "query image for the CNN timing");
  app.add_option("--json", json_out, "write the rows as JSON");
  app.add_flag("--no-diffusion", no_diffusion,
               "rank by the fused score alone (what the candidates alone recall)");
  app.add_option("--candidates", scale.candidates, "proposals per FAISS index")
      ->capture_default_str();
  app.add_option("--nprobe", scale.nprobe, "IVF lists visited per query")->capture_default_str();
  app.add_option("--kind", scale.kind,
                 "candidate indexes above the exact limit: ivf-flat or ivf-sq8 (default: by size)")
      ->transform(CLI::CheckedTransformer(std::map<std::string, IndexKind>{
          {"ivf-flat", IndexKind::IvfFlat}, {"ivf-sq8", IndexKind::IvfSq8}}));
  int shortlist = -1;
  app.add_option("--shortlist", shortlist,
                 "diffusion shortlist (0: the whole graph; default: the model's)");
  CLI11_PARSE(app, argc, argv);
  try {
    nlohmann::json out;
    out["rows"] = nlohmann::json::array();
    RankOptions rank;  // the default config's options
    rank.prob_a = 2.0;
    rank.prob_b = 0.15;
    std::printf("%-10s %-10s %-28s %9s %14s %9s %9s %9s\n", "gallery", "data", "index", "build_s",
                "bytes/photo", "p50_ms", "p99_ms", "recall@10");
    auto adjust = [&](RankOptions& r) {
      if (no_diffusion) r.diffusion = false;
      if (shortlist >= 0) r.diff.shortlist = shortlist;
    };
    adjust(rank);
    if (!index.empty()) {
      GalleryIndex g = read_gallery(index);
      auto m = Model::open(model_dir.empty() ? g.model_dir : model_dir);
      RankOptions own = m->info().rank;  // the real row ranks as its model does
      adjust(own);
      QueryArrays q{g.arrays.post, g.arrays.code, g.arrays.bridge};
      out["rows"].push_back(
          row("real", std::move(g.arrays), g.graph, q, recall_queries, own, scale));
    }
    for (int64_t n : sizes) {
      Synthetic s = synthetic(n, queries, 125, 125, 7);
      out["rows"].push_back(
          row("synthetic", std::move(s.g), s.graph, s.q, recall_queries, rank, scale));
    }
    if (!model_dir.empty() && !query.empty()) {
      auto m = Model::open(model_dir);
      uint64_t h = 0;
      cv::Mat img = load_rgb(query, &h);
      const std::string domain = m->info().query_domains.at(0);
      m->features(domain, {img}, {h});  // warm-up
      std::vector<double> ms;
      for (int i = 0; i < 10; ++i) {
        auto t = Clock::now();
        m->features(domain, {img}, {h});
        ms.push_back(1000 * seconds_since(t));
      }
      std::sort(ms.begin(), ms.end());
      out["query_cnn_ms"] = ms[5];
      std::printf("query CNN pass (%s, all members and views): %.1f ms median\n", domain.c_str(),
                  ms[5]);
    }
    if (!json_out.empty()) std::ofstream(json_out) << out.dump(2) << "\n";
  } catch (const Error& e) {
    std::fprintf(stderr, "search_latency: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
