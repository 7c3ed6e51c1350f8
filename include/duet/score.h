// duet/score.h — the scoring kernel: query rows against gallery rows, a block of queries at a time.
// Search and fusion rank with it at query time; evaluation (duet/metrics.h) measures with it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "duet/embeddings.h"

namespace duet {

enum class Metric { Cosine, Euclidean, Dot };
Metric parse_metric(const std::string& s);  // "cosine" | "euclidean" | "dot"; throws Error

// Fills out[(q - q0) * ng + g] with the score of gallery item g for queries q in [q0, q1);
// higher is better.
using ScoreBlockFn = std::function<void(int64_t q0, int64_t q1, float* out)>;

// Score blocks for embeddings q [nq, d] against g [ng, d]: scores [(q1-q0), ng].
// Cosine similarity, -||q - g||^2, or the plain inner product.
ScoreBlockFn embedding_scorer(const Matrix& q, const Matrix& g, Metric metric);

// A gallery made ready for embedding_scorer once (normalised for cosine, squared norms for
// Euclidean), so that a searcher asked for query after query does not copy it each time.
struct PreparedGallery {
  Metric metric = Metric::Dot;
  std::shared_ptr<const Matrix> g;
  std::shared_ptr<const std::vector<float>> norms;  // ||g_i||^2
};
PreparedGallery prepare_gallery(Matrix g, Metric metric);
ScoreBlockFn embedding_scorer(const Matrix& q, const PreparedGallery& g);

// Rows scaled to unit length (a zero row stays zero).
Matrix l2_normalized(const Matrix& m);

}  // namespace duet
