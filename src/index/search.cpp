// The retrieval path. See duet/search.h.
#include "duet/search.h"

#include <faiss/IndexIVF.h>
#include <faiss/index_factory.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "duet/error.h"
#include "duet/score.h"

namespace duet {

namespace {
const float* row_or_null(const Matrix& m, int64_t i) {
  return m.rows > i && m.cols > 0 ? m.row(i) : nullptr;
}
}  // namespace

QueryRow query_row(const QueryArrays& q, int64_t i) {
  return {row_or_null(q.code, i), row_or_null(q.post, i), row_or_null(q.bridge, i)};
}
QueryRow query_row(const GalleryArrays& g, int64_t i) {
  return {row_or_null(g.code, i), row_or_null(g.post, i), row_or_null(g.bridge, i)};
}

namespace {
void check_gallery(const GalleryArrays& g, const RankOptions& opt) {
  const int64_t n = g.code.rows;
  if (n < 1) fail("the gallery is empty");
  if (opt.fuse && g.post.rows != n)
    fail("gallery has ", n, " codes but ", g.post.rows, " posteriors; they must match row for row");
  if (opt.fuse && opt.fusion.uses_bridge() && (g.bridge.rows != n || g.bridge.cols < 1))
    fail("the bridge term needs one bridge row per gallery item: ", g.bridge.rows, " rows of ",
         g.bridge.cols, " for ", n, " items (a model without a bridge cannot weigh it)");
}

// Phase II's calibration: p(same | d) = sigmoid(a - b d).
std::function<double(double)> same_prob(const RankOptions& opt) {
  const double a = opt.prob_a, b = opt.prob_b;
  return [a, b](double d) { return 1.0 / (1.0 + std::exp(-(a - b * d))); };
}

int lists_for(int64_t n, const ScaleOptions& s) {
  return s.lists > 0
             ? s.lists
             : static_cast<int>(std::clamp<double>(std::sqrt(static_cast<double>(n)), 16, 65536));
}

// The candidate indexes for n rows (BySize: none up to the exact limit).
IndexKind kind_for(int64_t n, const ScaleOptions& s) {
  if (n <= s.exact_limit) return IndexKind::BySize;
  if (s.kind != IndexKind::BySize) return s.kind;
  return n <= s.flat_limit ? IndexKind::IvfFlat : IndexKind::IvfSq8;
}

// Rows [i0, i1) of the vectors an index holds, into out.
using IndexRows = std::function<void(int64_t i0, int64_t i1, float* out)>;

// An IVF index over n rows of d columns: lists trained on evenly spaced rows (deterministic),
// rows added a block at a time, so a derived matrix need never exist whole.
std::unique_ptr<faiss::Index> ivf_index(int64_t n, int64_t d, const IndexRows& rows,
                                        faiss::MetricType metric, IndexKind kind,
                                        const ScaleOptions& s) {
  const int lists = lists_for(n, s);
  const std::string desc =
      "IVF" + std::to_string(lists) + (kind == IndexKind::IvfSq8 ? ",SQ8" : ",Flat");
  std::unique_ptr<faiss::Index> index(
      faiss::index_factory(static_cast<int>(d), desc.c_str(), metric));
  const int64_t want = std::min<int64_t>(n, 64LL * lists), step = std::max<int64_t>(1, n / want);
  std::vector<float> block;
  for (int64_t i = 0; i < n && static_cast<int64_t>(block.size()) < want * d; i += step) {
    block.resize(block.size() + static_cast<size_t>(d));
    rows(i, i + 1, block.data() + block.size() - d);
  }
  index->train(static_cast<int64_t>(block.size()) / d, block.data());
  constexpr int64_t kBlock = 65536;
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t i1 = std::min(n, i0 + kBlock);
    block.resize(static_cast<size_t>((i1 - i0) * d));
    rows(i0, i1, block.data());
    index->add(i1 - i0, block.data());
  }
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(index.get());
  ivf->nprobe = static_cast<size_t>(s.nprobe);
  ivf->parallel_mode = 1;  // one query at a time: both cores share its lists
  return index;
}
}  // namespace

std::shared_ptr<const GalleryGraph> gallery_graph(const GalleryArrays& g, const RankOptions& opt) {
  if (!opt.fuse || !opt.diffusion || g.code.rows < 2) return nullptr;
  if (opt.graph == GraphSpace::Embedding)
    return std::make_shared<const GalleryGraph>(g.emb, opt.diff);
  if (g.bridge.rows != g.code.rows || g.bridge.cols < 1)
    fail("a graph over bridge rows needs them (", g.bridge.rows, " x ", g.bridge.cols, " for ",
         g.code.rows, " items): a model without a bridge builds its graph over the embeddings");
  if (opt.graph == GraphSpace::Bridge)
    return std::make_shared<const GalleryGraph>(g.bridge, opt.diff);
  const Matrix e = l2_normalized(g.emb);
  Matrix both(g.code.rows, e.cols + g.bridge.cols);
  for (int64_t i = 0; i < both.rows; ++i) {
    std::copy(e.row(i), e.row(i) + e.cols, both.row(i));
    std::copy(g.bridge.row(i), g.bridge.row(i) + g.bridge.cols, both.row(i) + e.cols);
  }
  return std::make_shared<const GalleryGraph>(both, opt.diff);
}

// The gallery side of a Searcher, shared by its row sources.
struct Searcher::State {
  int64_t n = 0;
  RankOptions opt;
  std::shared_ptr<const FusedScore> fused;  // the fused score (null: the paper's code distance)
  PreparedGallery code_p;                   // the paper config's codes, with their squared norms
  std::shared_ptr<const GalleryGraph> graph;
  ScaleOptions scale;
  IndexKind kind = IndexKind::BySize;  // BySize: exact (no candidate indexes)
  // The candidate path's FAISS indexes: codes, sharpened posteriors, profiles (the gate only),
  // bridge rows (when the score weighs them).
  std::unique_ptr<faiss::Index> ann_code, ann_post, ann_prof, ann_bridge;
  // Evenly spaced rows, copied out whole: the estimate of a query's score mass outside its
  // candidates, scored each query from these contiguous copies rather than the scattered rows.
  std::vector<int64_t> sample;
  std::unique_ptr<FusedScore> sample_score;

  // The graph rows of `rows` into out (when asked and there is a graph).
  void edges(ScoredRows& out, bool graph) const {
    if (!graph || !this->graph) return;
    const auto &start = this->graph->csr_start(), &col = this->graph->csr_col();
    const auto& w = this->graph->csr_weight();
    for (int64_t r : out.rows)
      out.add_edges(col.data() + start[r], w.data() + start[r], start[r + 1] - start[r]);
  }
  void check_rows(const std::vector<int64_t>& rows) const {
    for (int64_t r : rows)
      if (r < 0 || r >= n) fail("row ", r, " is not in the gallery (", n, " rows)");
  }
};

void ScoredRows::add_edges(const int64_t* col, const float* w, int64_t m) {
  adj_col.insert(adj_col.end(), col, col + m);
  adj_w.insert(adj_w.end(), w, w + m);
  adj_start.push_back(static_cast<int64_t>(adj_col.size()));
}

namespace {
using State = Searcher::State;

// The best `limit` of the scored rows, best first, with the top and mass over them (mass_more:
// what the rows outside them add).
ScoredRows best_of(const std::vector<int64_t>& rows, const std::vector<float>& s, int64_t limit,
                   const std::function<double(float top)>& mass_more) {
  ScoredRows out;
  // The score mass: exp in float, summed in double, in row order.
  out.top = *std::max_element(s.begin(), s.end());
  for (float v : s) out.mass += std::exp(v - out.top);
  out.mass += mass_more(out.top);
  for (size_t i : best_first(rows, s, limit)) out.add_row(rows[i], s[i]);
  return out;
}

// A row source over the Searcher's own gallery; Query answers one query's questions.
template <class Query>
class LocalRows : public RowSource {
 public:
  explicit LocalRows(std::shared_ptr<const State> s) : s_(std::move(s)) {}
  int64_t size() const override { return s_->n; }
  bool has_graph() const override { return s_->graph != nullptr; }
  std::unique_ptr<RowQuery> query(const QueryRow& q) const override {
    return std::make_unique<Query>(*s_, q);
  }

 private:
  std::shared_ptr<const State> s_;
};

// Every row, scored through the block scorers (the benchmark's arithmetic).
class ExactQuery : public RowQuery {
 public:
  ExactQuery(const State& s, const QueryRow& q) : s_(s), q_(q) {}
  float gate_evidence() override { return s_.fused->gate_evidence(q_.post); }
  ScoredRows best(bool unseen, int64_t limit, bool graph) override {
    const std::vector<float>& s = scores(unseen);
    std::vector<int64_t> all(s.size());
    std::iota(all.begin(), all.end(), 0);
    ScoredRows out = best_of(all, s, limit, [](float) { return 0.0; });
    s_.edges(out, graph);
    return out;
  }
  ScoredRows rows(bool unseen, const std::vector<int64_t>& rows, bool graph) override {
    s_.check_rows(rows);
    const std::vector<float>& s = scores(unseen);
    ScoredRows out;
    for (int64_t r : rows) out.add_row(r, s[static_cast<size_t>(r)]);
    s_.edges(out, graph);
    return out;
  }

 private:
  const State& s_;
  QueryRow q_;
  std::vector<float> all_;  // every row's score before diffusion, once per query
  int unseen_ = -1;         // the gate all_ was scored with

  const std::vector<float>& scores(bool unseen) {
    if (unseen_ == static_cast<int>(unseen)) return all_;
    // One query's rows as a batch of one: the same products, so the same numbers, as the query
    // gets among others.
    const int64_t d = s_.fused ? s_.fused->codes().cols : s_.code_p.g->cols;
    const Matrix* b = s_.fused ? s_.fused->bridge_rows() : nullptr;
    const int64_t C = s_.fused ? s_.fused->posteriors().cols : 0;
    Matrix code(1, d), post(1, C), bridge(b ? 1 : 0, b ? b->cols : 0);
    std::copy(q_.code, q_.code + d, code.data.begin());
    if (C) std::copy(q_.post, q_.post + C, post.data.begin());
    if (b) std::copy(q_.bridge, q_.bridge + b->cols, bridge.data.begin());
    all_.assign(static_cast<size_t>(s_.n), 0.f);
    if (s_.fused) {
      const std::vector<char> gate{static_cast<char>(unseen)};
      s_.fused->scorer(code, post, &gate, bridge).score(0, 1, all_.data());
    } else {
      embedding_scorer(code, s_.code_p)(0, 1, all_.data());  // -||zq - zg||^2
    }
    unseen_ = unseen;
    return all_;
  }
};
using ExactRows = LocalRows<ExactQuery>;

// The union of the FAISS indexes' proposals, scored row by row; the mass outside them estimated
// from the sample rows.
class CandidateQuery : public RowQuery {
 public:
  CandidateQuery(const State& s, const QueryRow& q) : s_(s), q_(q) {}
  float gate_evidence() override { return s_.fused->gate_evidence_among(q_.post, candidates()); }
  ScoredRows best(bool unseen, int64_t limit, bool graph) override {
    const std::vector<int64_t>& cand = candidates();
    std::vector<float> s(cand.size());
    score(unseen, cand, s.data());
    ScoredRows out = best_of(cand, s, limit, [&](float top) { return mass_outside(unseen, top); });
    s_.edges(out, graph);
    return out;
  }
  ScoredRows rows(bool unseen, const std::vector<int64_t>& rows, bool graph) override {
    s_.check_rows(rows);
    ScoredRows out;
    out.rows = rows;
    out.score.resize(rows.size());
    score(unseen, rows, out.score.data());
    s_.edges(out, graph);
    return out;
  }

 private:
  const State& s_;
  QueryRow q_;
  std::vector<int64_t> cand_;  // sorted, distinct; once per query
  bool have_ = false;

  const std::vector<int64_t>& candidates() {
    if (have_) return cand_;
    const int c = s_.scale.candidates;
    std::vector<float> dist(static_cast<size_t>(c));
    std::vector<faiss::Index::idx_t> ids(static_cast<size_t>(c));
    auto propose = [&](const faiss::Index* index, const float* x) {
      index->search(1, x, c, dist.data(), ids.data());
      for (auto id : ids)
        if (id >= 0) cand_.push_back(id);
    };
    propose(s_.ann_code.get(), q_.code);
    if (s_.fused) {
      propose(s_.ann_post.get(), q_.post);
      if (s_.ann_prof) {
        std::vector<float> lq(static_cast<size_t>(s_.fused->posteriors().cols));
        profile_row(q_.post, static_cast<int64_t>(lq.size()), lq.data());  // as the scorer does
        propose(s_.ann_prof.get(), lq.data());
      }
      if (s_.ann_bridge) propose(s_.ann_bridge.get(), q_.bridge);
    }
    std::sort(cand_.begin(), cand_.end());
    cand_.erase(std::unique(cand_.begin(), cand_.end()), cand_.end());
    have_ = true;
    return cand_;
  }

  // The score before diffusion of some rows, each computed alone.
  void score(bool unseen, const std::vector<int64_t>& rows, float* out) const {
    if (s_.fused) {
      s_.fused->score_rows(q_.code, q_.post, unseen, rows, out, q_.bridge);
      return;
    }
    const Matrix& code = *s_.code_p.g;
    for (size_t i = 0; i < rows.size(); ++i) {
      const float* zg = code.row(rows[i]);
      double d = 0;
      for (int64_t j = 0; j < code.cols; ++j)
        d += static_cast<double>(q_.code[j] - zg[j]) * (q_.code[j] - zg[j]);
      out[i] = static_cast<float>(-d);
    }
  }

  // The candidates hold the peak of the query's score mass; the rest is estimated from the
  // evenly spaced sample rows outside them.
  double mass_outside(bool unseen, float top) const {
    if (!s_.fused) return 0;
    std::vector<int64_t> rest;  // positions in the sample
    for (size_t i = 0; i < s_.sample.size(); ++i)
      if (!std::binary_search(cand_.begin(), cand_.end(), s_.sample[i]))
        rest.push_back(static_cast<int64_t>(i));
    if (rest.empty()) return 0;
    std::vector<float> rs(rest.size());
    s_.sample_score->score_rows(q_.code, q_.post, unseen, rest, rs.data(), q_.bridge);
    double tail = 0;
    for (float v : rs) tail += std::exp(std::min(0.f, v - top));
    return tail * static_cast<double>(s_.n - static_cast<int64_t>(cand_.size())) /
           static_cast<double>(rest.size());
  }
};
using CandidateRows = LocalRows<CandidateQuery>;
}  // namespace

Searcher::~Searcher() = default;
Searcher::Searcher(Searcher&&) noexcept = default;
Searcher& Searcher::operator=(Searcher&&) noexcept = default;

std::string Searcher::index_type_for(int64_t n, const ScaleOptions& s) {
  const IndexKind kind = kind_for(n, s);
  if (kind == IndexKind::BySize) return "exact";
  return "ivf" + std::to_string(lists_for(n, s)) + (kind == IndexKind::IvfSq8 ? ",sq8" : ",flat") +
         ",nprobe" + std::to_string(s.nprobe) + ",cand" + std::to_string(s.candidates);
}
std::string Searcher::index_type() const { return index_type_for(s_->n, s_->scale); }
int64_t Searcher::size() const { return s_->n; }
const RankOptions& Searcher::options() const { return s_->opt; }
const std::shared_ptr<const GalleryGraph>& Searcher::graph() const { return s_->graph; }
bool Searcher::uses_bridge() const { return s_->fused && s_->fused->bridge_rows(); }
const RowSource& Searcher::rows() const { return cand_ ? *cand_ : *exact_; }

Searcher::Searcher(GalleryArrays g, const RankOptions& opt) {
  auto graph = gallery_graph(g, opt);
  *this = Searcher(std::move(g), opt, std::move(graph));
}

Searcher::Searcher(GalleryArrays g, const RankOptions& opt,
                   std::shared_ptr<const GalleryGraph> graph, const ScaleOptions& scale) {
  auto st = std::make_shared<State>();
  State& s = *st;
  s.n = g.code.rows;
  s.opt = opt;
  s.graph = std::move(graph);
  s.scale = scale;
  check_gallery(g, opt);
  const int64_t n = s.n;
  if (s.graph && s.graph->size() != n)
    fail("the gallery graph has ", s.graph->size(), " items but the gallery ", n);
  s.kind = kind_for(n, scale);
  const bool exact = s.kind == IndexKind::BySize;
  // The sample rows of the mass estimate, copied out before the arrays move into the scorer.
  Matrix sample_code, sample_post, sample_bridge;
  const bool bridge = opt.fuse && opt.fusion.uses_bridge();
  if (!exact && opt.fuse) {
    const int64_t m = std::min<int64_t>(n, scale.mass_sample), step = std::max<int64_t>(1, n / m);
    for (int64_t i = 0; i < n && static_cast<int64_t>(s.sample.size()) < m; i += step)
      s.sample.push_back(i);
    const int64_t ns = static_cast<int64_t>(s.sample.size());
    sample_code = Matrix(ns, g.code.cols);
    sample_post = Matrix(ns, g.post.cols);
    sample_bridge = Matrix(bridge ? ns : 0, g.bridge.cols);
    for (int64_t i = 0; i < ns; ++i) {
      const int64_t r = s.sample[static_cast<size_t>(i)];
      std::copy(g.code.row(r), g.code.row(r) + g.code.cols, sample_code.row(i));
      std::copy(g.post.row(r), g.post.row(r) + g.post.cols, sample_post.row(i));
      if (bridge) std::copy(g.bridge.row(r), g.bridge.row(r) + g.bridge.cols, sample_bridge.row(i));
    }
  }
  if (opt.fuse) {
    // The compressed tier keeps the codes and posteriors alone (duet/fusion.h).
    s.fused = std::make_shared<const FusedScore>(
        std::move(g.code), std::move(g.post), same_prob(opt), opt.fusion,
        s.kind == IndexKind::IvfSq8, bridge ? std::move(g.bridge) : Matrix());
  } else {
    s.code_p = prepare_gallery(std::move(g.code), Metric::Euclidean);
  }
  if (!exact) {
    const Matrix& code = s.fused ? s.fused->codes() : *s.code_p.g;
    s.ann_code = ivf_index(
        n, code.cols,
        [&](int64_t i0, int64_t i1, float* out) {
          std::copy(code.row(i0), code.row(i1 - 1) + code.cols, out);
        },
        faiss::METRIC_L2, s.kind, scale);
    if (s.fused) {
      const FusedScore& f = *s.fused;
      const int64_t C = f.posteriors().cols;
      s.ann_post = ivf_index(
          n, C, [&](int64_t i0, int64_t i1, float* out) { f.sharpened_rows(i0, i1, out); },
          faiss::METRIC_INNER_PRODUCT, s.kind, scale);
      if (opt.fusion.unseen_gate > 0)
        s.ann_prof = ivf_index(
            n, C, [&](int64_t i0, int64_t i1, float* out) { f.profile_rows(i0, i1, out); },
            faiss::METRIC_INNER_PRODUCT, s.kind, scale);
      if (const Matrix* b = f.bridge_rows())
        s.ann_bridge = ivf_index(
            n, b->cols,
            [&](int64_t i0, int64_t i1, float* out) {
              std::copy(b->row(i0), b->row(i1 - 1) + b->cols, out);
            },
            faiss::METRIC_INNER_PRODUCT, s.kind, scale);
      // A few thousand rows: stored whole (the same numbers as derived ones, and no derivation
      // per query).
      s.sample_score =
          std::make_unique<FusedScore>(std::move(sample_code), std::move(sample_post),
                                       same_prob(opt), opt.fusion, false, std::move(sample_bridge));
    }
  }
  s_ = st;
  exact_ = std::make_unique<ExactRows>(st);
  if (!exact) cand_ = std::make_unique<CandidateRows>(st);
}

void Searcher::check_queries(const QueryArrays& q) const {
  const int64_t nq = q.code.rows;
  const int64_t d = s_->fused ? s_->fused->codes().cols : s_->code_p.g->cols;
  if (q.code.cols != d) fail("query codes are ", q.code.cols, "-d but gallery codes ", d, "-d");
  if (s_->fused && (q.post.rows != nq || q.post.cols != s_->fused->posteriors().cols))
    fail("the queries need one posterior over the gallery's ", s_->fused->posteriors().cols,
         " classes each: ", q.post.rows, " rows of ", q.post.cols, " for ", nq, " queries");
  if (uses_bridge() && (q.bridge.rows != nq || q.bridge.cols != s_->fused->bridge_rows()->cols))
    fail("the queries need ", s_->fused->bridge_rows()->cols,
         "-d bridge rows (this model's score weighs them)");
}

Ranking Searcher::search(const QueryRow& q, int64_t k) const {
  if (uses_bridge() && !q.bridge)
    fail("the query has no bridge row, and this model's score weighs one");
  // Past the candidates' reach (k above them, or the whole gallery) every row is scored.
  const bool all = k <= 0 || k >= s_->n || k > s_->scale.candidates;
  return rank(cand_ && !all ? *cand_ : *exact_, s_->opt, q, k);
}

std::vector<Ranking> Searcher::search(const QueryArrays& q, int64_t k) const {
  check_queries(q);
  std::vector<Ranking> out;
  for (int64_t i = 0; i < q.code.rows; ++i) out.push_back(search(query_row(q, i), k));
  return out;
}

ScoreBlockFn Searcher::scores(const QueryArrays& q, bool diffuse, std::vector<char>* unseen) const {
  check_queries(q);
  RankOptions opt = s_->opt;
  opt.diffusion = opt.diffusion && diffuse;
  const int64_t n = s_->n;
  if (unseen) {
    unseen->assign(static_cast<size_t>(q.code.rows), 0);
    if (opt.fuse && opt.fusion.unseen_gate > 0)
      for (int64_t i = 0; i < q.code.rows; ++i)
        (*unseen)[static_cast<size_t>(i)] =
            exact_->query(query_row(q, i))->gate_evidence() < opt.fusion.unseen_gate;
  }
  // The lambda holds its own copies of the queries and shares the gallery side.
  auto src = std::make_shared<ExactRows>(s_);
  return [src, q, opt, n](int64_t q0, int64_t q1, float* out) {
    for (int64_t i = q0; i < q1; ++i) {
      float* row = out + (i - q0) * n;
      for (const Hit& h : rank(*src, opt, query_row(q, i), n).hits) row[h.row] = h.score;
    }
  };
}

}  // namespace duet
