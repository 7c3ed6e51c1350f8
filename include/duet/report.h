// duet/report.h — what a run shows a person: curves, per-class AP, example queries, t-SNE maps,
// in one self-contained HTML page.
//
//   <out>/<split>/eval.json  written by `duet run` beside the metrics: per query domain, the
//                            precision-recall and mAP@K curves, AP per class, and the best,
//                            median and worst queries with their top 10
//   <out>/report.html        `duet report --run <out>` (and the end of `duet run`): the metrics
//                            and compute ledger of every split, those curves and examples (with
//                            thumbnails), t-SNE maps of the Phase I embeddings and the Phase II
//                            codes of the test images, and, where bench/tradeoff.sh has run,
//                            mAP against training FLOPs. Chart.js (Debian's libjs-chart.js) and
//                            every image are inlined: the page needs no network.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace duet {

// Curves and per-class figures from each query's relevant ranks (evaluate_scores'
// relevant_out), as JSON: {"pr": {"recall": [..], "precision": [..]}, "map_at": {"k": [..],
// "map": [..]}, "per_class": [{"class", "ap", "queries"}] (best first), "ap": [per query, -1
// when it had no relevant item]}. Precision at recall r is interpolated (the best precision at
// any recall >= r), averaged over queries.
std::string retrieval_detail(const std::vector<std::vector<int64_t>>& ranks,
                             const std::vector<std::string>& query_classes, int64_t gallery);

// Queries worth showing: the best, median and worst AP (by retrieval_detail's "ap"), as query
// indices, best first; fewer when there are fewer queries.
std::vector<int64_t> example_queries(const std::vector<std::vector<int64_t>>& ranks);

struct ReportOptions {
  std::string run;       // a `duet run` output folder (metrics.json, <split>/eval.json, models)
  std::string out;       // "" = <run>/report.html
  std::string tradeoff;  // bench/tradeoff.sh JSON; "" = <run>/tradeoff.json if it exists
  int64_t tsne_points = 1500;  // per map, evenly spaced beyond this
  uint64_t seed = 0;
  int threads = 0;
};

// Writes the page (atomically); returns its path.
std::string write_report(const ReportOptions& opt);

}  // namespace duet
