// The retrieval path. See duet/search.h.
#include "duet/search.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "duet/error.h"

namespace duet {

namespace {
void check_gallery(const GalleryArrays& g, const RankOptions& opt) {
  const int64_t n = g.code.rows;
  if (n < 1) fail("the gallery is empty");
  if (opt.fuse && g.post.rows != n)
    fail("gallery has ", n, " codes but ", g.post.rows, " posteriors; they must match row for row");
  if (opt.fuse && opt.diffusion && g.emb.rows != n)
    fail("gallery has ", n, " codes but ", g.emb.rows, " embeddings; they must match row for row");
}
}  // namespace

Searcher::Searcher(const GalleryArrays& g, const RankOptions& opt)
    : Searcher(g, opt, opt.fuse && opt.diffusion && g.code.rows >= 2
                           ? std::make_shared<const GalleryGraph>(g.emb, opt.diff)
                           : nullptr) {}

Searcher::Searcher(const GalleryArrays& g, const RankOptions& opt, std::shared_ptr<const GalleryGraph> graph)
    : n_(g.code.rows), opt_(opt), graph_(std::move(graph)) {
  check_gallery(g, opt);
  if (graph_ && graph_->size() != n_)
    fail("the gallery graph has ", graph_->size(), " items but the gallery ", n_);
  if (opt.fuse) {
    const double a = opt.prob_a, b = opt.prob_b;
    fused_ = std::make_shared<const FusedScore>(
        g.code, g.post, [a, b](double d) { return 1.0 / (1.0 + std::exp(-(a - b * d))); }, opt.fusion);
  } else {
    code_ = std::make_shared<const Matrix>(g.code);
  }
}

ScoreBlockFn Searcher::scores(const QueryArrays& q, bool diffuse, std::vector<char>* unseen) const {
  const int64_t ng = n_;
  if (code_ && q.code.cols != code_->cols)
    fail("query codes are ", q.code.cols, "-d but gallery codes ", code_->cols, "-d");
  ScoreBlockFn base;
  if (fused_) {
    FusedScorer f = fused_->scorer(q.code, q.post);
    if (unseen) *unseen = f.unseen;
    base = f.score;
  } else {
    base = embedding_scorer(q.code, *code_, Metric::Euclidean);  // -||zq - zg||^2
    if (unseen) unseen->assign(static_cast<size_t>(q.code.rows), 0);
  }
  std::shared_ptr<const GalleryGraph> graph = diffuse ? graph_ : nullptr;
  return [base, graph, ng](int64_t q0, int64_t q1, float* out) {
    std::vector<float> p(graph ? static_cast<size_t>(ng) : 0);
    for (int64_t qi = q0; qi < q1; ++qi) {
      float* row = out + (qi - q0) * ng;
      base(qi, qi + 1, row);  // one query at a time: see scores() in duet/search.h
      if (!graph) continue;
      // The fused score is a log-probability up to a constant: probabilities up to scale.
      const float top = *std::max_element(row, row + ng);
      for (int64_t j = 0; j < ng; ++j) p[j] = std::exp(row[j] - top);
      graph->rerank(p.data(), row);
    }
  };
}

std::vector<Ranking> Searcher::search(const QueryArrays& q, int64_t k) const {
  const int64_t nq = q.code.rows, ng = n_;
  const int64_t kk = k <= 0 || k > ng ? ng : k;
  std::vector<char> unseen;
  ScoreBlockFn score = scores(q, true, &unseen);
  std::vector<Ranking> out(static_cast<size_t>(nq));
  std::vector<float> row(static_cast<size_t>(ng));
  std::vector<int64_t> order(static_cast<size_t>(ng));
  for (int64_t i = 0; i < nq; ++i) {
    score(i, i + 1, row.data());
    std::iota(order.begin(), order.end(), 0);
    // The ranking evaluate_scores measures: higher score first, ties by lower row.
    auto before = [&](int64_t a, int64_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
    std::partial_sort(order.begin(), order.begin() + kk, order.end(), before);
    Ranking& r = out[static_cast<size_t>(i)];
    r.unseen = unseen[static_cast<size_t>(i)] != 0;
    r.hits.reserve(static_cast<size_t>(kk));
    for (int64_t j = 0; j < kk; ++j) r.hits.push_back({order[j], row[order[j]]});
  }
  return out;
}

}  // namespace duet
