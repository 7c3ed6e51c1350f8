// The scoring kernel: a block of queries against the gallery in one BLAS call. See duet/score.h.
#include "duet/score.h"

#include <cblas.h>

#include <cmath>
#include <memory>

#include "duet/error.h"

namespace duet {

Metric parse_metric(const std::string& s) {
  if (s == "cosine") return Metric::Cosine;
  if (s == "euclidean") return Metric::Euclidean;
  if (s == "dot") return Metric::Dot;
  fail("unknown metric '", s, "': use cosine, euclidean or dot");
}

namespace {
std::vector<float> row_norms_sq(const Matrix& m) {
  std::vector<float> n(static_cast<size_t>(m.rows));
  for (int64_t i = 0; i < m.rows; ++i) {
    double s = 0;
    for (int64_t j = 0; j < m.cols; ++j) s += static_cast<double>(m.row(i)[j]) * m.row(i)[j];
    n[i] = static_cast<float>(s);
  }
  return n;
}

}  // namespace

Matrix l2_normalized(const Matrix& m) {
  Matrix out = m;
  auto n2 = row_norms_sq(m);
  for (int64_t i = 0; i < m.rows; ++i) {
    float inv = n2[i] > 0 ? 1.0f / std::sqrt(n2[i]) : 1.0f;  // a zero vector scores 0 everywhere
    for (int64_t j = 0; j < m.cols; ++j) out.row(i)[j] *= inv;
  }
  return out;
}

PreparedGallery prepare_gallery(Matrix g_in, Metric metric) {
  PreparedGallery p;
  p.metric = metric;
  p.g = std::make_shared<const Matrix>(metric == Metric::Cosine ? l2_normalized(g_in)
                                                                : std::move(g_in));
  p.norms = std::make_shared<const std::vector<float>>(row_norms_sq(*p.g));
  return p;
}

ScoreBlockFn embedding_scorer(const Matrix& q_in, const Matrix& g_in, Metric metric) {
  return embedding_scorer(q_in, prepare_gallery(g_in, metric));
}

ScoreBlockFn embedding_scorer(const Matrix& q_in, const PreparedGallery& pg) {
  const Metric metric = pg.metric;
  if (q_in.cols != pg.g->cols)
    fail("query embeddings are ", q_in.cols, "-d but gallery embeddings are ", pg.g->cols,
         "-d; both must come from the same encoder");
  auto q = std::make_shared<Matrix>(metric == Metric::Cosine ? l2_normalized(q_in) : q_in);
  auto qn = std::make_shared<std::vector<float>>(row_norms_sq(*q));
  auto g = pg.g;
  auto gn = pg.norms;
  return [q, g, qn, gn, metric](int64_t q0, int64_t q1, float* out) {
    const int64_t m = q1 - q0, n = g->rows, d = q->cols;
    if (m == 0 || n == 0) return;
    // out = Q[q0:q1] * G^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(d), 1.0f, q->row(q0), static_cast<int>(d), g->data.data(),
                static_cast<int>(d), 0.0f, out, static_cast<int>(n));
    if (metric == Metric::Euclidean) {
      // score = -||q - g||^2 = 2 q.g - ||q||^2 - ||g||^2
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
          out[i * n + j] = 2.0f * out[i * n + j] - (*qn)[q0 + i] - (*gn)[j];
    }
  };
}

}  // namespace duet
