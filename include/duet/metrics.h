// duet/metrics.h — retrieval metrics (relevance = same class).
//
// For one query with R relevant gallery items at ranks r_1 < ... < r_R (1-based, full ranking,
// ties broken by gallery row, lower row first):
//   AP@all = (1/R)          * sum_i  i / r_i
//   AP@K   = (1/min(R, K))  * sum_{i : r_i <= K}  i / r_i
//   P@K    = #{i : r_i <= K} / K        (K larger than the gallery still divides by K)
// map_all / map@K / p@K average these over the queries with R > 0; a query with R = 0 is skipped
// and counted in `skipped`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "duet/embeddings.h"
#include "duet/score.h"

namespace duet {

struct RetrievalMetrics {
  double map_all = 0;
  std::map<int, double> map_at, p_at;  // K -> value
  int64_t queries = 0;                 // queries that counted (R > 0)
  int64_t skipped = 0;                 // queries with R = 0
  std::string to_json() const;  // {"map_all":..,"map@100":..,"p@100":..,"queries":..,"skipped":..}
};

struct EvalOptions {
  Metric metric = Metric::Cosine;
  std::vector<int> ks = {100, 200};
  int64_t block = 256;  // queries scored at once: memory is block * gallery floats
};

// The general form: any scoring, evaluated block by block in bounded memory. With relevant_out,
// also each query's relevant ranks (relevant_ranks; empty when R = 0), for curves and reports.
RetrievalMetrics evaluate_scores(int64_t nq, int64_t ng, const ScoreBlockFn& score,
                                 const std::vector<int>& query_labels,
                                 const std::vector<int>& gallery_labels, const EvalOptions& opt,
                                 std::vector<std::vector<int64_t>>* relevant_out = nullptr);

// Embedding form: q [nq, d], g [ng, d], scored by cosine similarity or negative Euclidean distance.
RetrievalMetrics evaluate(const Matrix& q, const Matrix& g,
                          const std::vector<std::string>& q_labels,
                          const std::vector<std::string>& g_labels, const EvalOptions& opt);

// Class names -> ids shared by both lists (for evaluate_scores).
void label_ids(const std::vector<std::string>& q, const std::vector<std::string>& g,
               std::vector<int>& qi, std::vector<int>& gi);

// 1-based ranks of the relevant items (relevant[g] != 0) in the ranking by `scores` (higher first,
// ties by lower index), sorted ascending. O(n log R).
std::vector<int64_t> relevant_ranks(const float* scores, const uint8_t* relevant, int64_t n);

}  // namespace duet
