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

GalleryArrays GalleryArrays::rows(int64_t b, int64_t e) const {
  GalleryArrays out;
  for (size_t k = 0; k < 4; ++k) {
    const Matrix& from = *matrices()[k];
    if (b < 0 || e < b || e > from.rows) fail("internal: rows [", b, ", ", e, ") of ", from.rows);
    Matrix& to = *out.matrices()[k];
    to = Matrix(e - b, from.cols);
    std::copy(from.row(b), from.row(b) + (e - b) * from.cols, to.data.begin());
  }
  return out;
}

void GalleryArrays::append(const GalleryArrays& o) {
  for (size_t k = 0; k < 4; ++k) {
    const Matrix& from = *o.matrices()[k];
    Matrix& to = *matrices()[k];
    if (to.rows == 0) to.cols = from.cols;
    if (from.rows == 0) continue;
    if (from.cols != to.cols)
      fail("internal: appending rows of ", from.cols, " columns to ", to.cols);
    to.data.insert(to.data.end(), from.data.begin(), from.data.end());
    to.rows += from.rows;
  }
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

std::string kind_for(int64_t n, const ScaleOptions& s) {
  if (n <= s.exact_limit) return "exact";
  if (!s.kind.empty()) {
    if (s.kind != "ivf-flat" && s.kind != "ivf-sq8")
      fail("unknown candidate index kind '", s.kind, "' (ivf-flat or ivf-sq8)");
    return s.kind;
  }
  return n <= s.flat_limit ? "ivf-flat" : "ivf-sq8";
}

// Rows [i0, i1) of the vectors an index holds, into out.
using RowSource = std::function<void(int64_t i0, int64_t i1, float* out)>;

// An IVF index over n rows of d columns: lists trained on evenly spaced rows (deterministic),
// rows added a block at a time, so a derived matrix need never exist whole.
std::unique_ptr<faiss::Index> ivf_index(int64_t n, int64_t d, const RowSource& rows,
                                        faiss::MetricType metric, const std::string& kind,
                                        const ScaleOptions& s) {
  const int lists = lists_for(n, s);
  const std::string desc = "IVF" + std::to_string(lists) + (kind == "ivf-sq8" ? ",SQ8" : ",Flat");
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
// Positions of the best k of the scored rows (rows[i] scored s[i]; k <= 0: none), best first:
// higher score, then lower row, the order every ranking here uses.
std::vector<size_t> best_first(const std::vector<int64_t>& rows, const std::vector<float>& s,
                               int64_t k) {
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t kk = std::min<size_t>(order.size(), static_cast<size_t>(std::max<int64_t>(k, 0)));
  std::partial_sort(order.begin(), order.begin() + kk, order.end(), [&](size_t a, size_t b) {
    return s[a] > s[b] || (s[a] == s[b] && rows[a] < rows[b]);
  });
  order.resize(kk);
  return order;
}
}  // namespace

Added diffuse_shortlist(const GalleryGraph& graph, const DiffusionOptions& opt, const int64_t* rows,
                        const float* s, size_t n, float top, double total,
                        const RowScorer& score_more, float* out) {
  const size_t m = opt.shortlist > 0 ? std::min<size_t>(n, static_cast<size_t>(opt.shortlist)) : n;
  const size_t seeds = std::min<size_t>(m, static_cast<size_t>(opt.seeds));
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  auto better = [&](size_t a, size_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };
  if (m < n) std::nth_element(order.begin(), order.begin() + m, order.end(), better);
  order.resize(m);
  std::sort(order.begin(), order.end(), better);  // the seeds first
  // The shortlist as (row, position in rows, or -1 for a row it adds), then the seeds'
  // neighbours, so the first hops of the propagation are all there.
  std::vector<std::pair<int64_t, int64_t>> nodes;
  for (size_t i : order) nodes.emplace_back(rows[i], static_cast<int64_t>(i));
  Added added;
  for (size_t i = 0; i < seeds; ++i) {
    const int64_t g = rows[order[i]];
    for (int64_t e = graph.csr_start()[g]; e < graph.csr_start()[g + 1]; ++e) {
      const int64_t o = graph.csr_col()[e];
      const int64_t* it = std::lower_bound(rows, rows + n, o);
      if (it != rows + n && *it == o)
        nodes.emplace_back(o, it - rows);
      else
        added.rows.push_back(o);
    }
  }
  std::sort(added.rows.begin(), added.rows.end());
  added.rows.erase(std::unique(added.rows.begin(), added.rows.end()), added.rows.end());
  added.score.resize(added.rows.size());
  if (!added.rows.empty()) score_more(added.rows, added.score.data());
  for (size_t i = 0; i < added.rows.size(); ++i)
    nodes.emplace_back(added.rows[i], -1 - static_cast<int64_t>(i));
  // Sorted and distinct, as rerank_subset needs them.
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  std::vector<int64_t> sub;
  std::vector<float> p;
  for (const auto& [row, at] : nodes) {
    sub.push_back(row);
    p.push_back(std::exp((at >= 0 ? s[at] : added.score[static_cast<size_t>(-1 - at)]) - top));
  }
  std::vector<float> diffused(sub.size());
  graph.rerank_subset(sub, p.data(), diffused.data(), total);
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(opt.blend * std::exp(s[i] - top) / total);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const int64_t at = nodes[i].second;
    if (at >= 0)
      out[at] = diffused[i];
    else
      added.score[static_cast<size_t>(-1 - at)] = diffused[i];
  }
  return added;
}

std::shared_ptr<const GalleryGraph> gallery_graph(const GalleryArrays& g, const RankOptions& opt) {
  if (!opt.fuse || !opt.diffusion || g.code.rows < 2) return nullptr;
  if (opt.graph == "embedding") return std::make_shared<const GalleryGraph>(g.emb, opt.diff);
  if (opt.graph != "bridge" && opt.graph != "both")
    fail("unknown graph space '", opt.graph, "' (embedding, bridge or both)");
  if (g.bridge.rows != g.code.rows || g.bridge.cols < 1)
    fail("a graph over bridge rows needs them (", g.bridge.rows, " x ", g.bridge.cols, " for ",
         g.code.rows, " items): a model without a bridge builds its graph over the embeddings");
  if (opt.graph == "bridge") return std::make_shared<const GalleryGraph>(g.bridge, opt.diff);
  const Matrix e = l2_normalized(g.emb);
  Matrix both(g.code.rows, e.cols + g.bridge.cols);
  for (int64_t i = 0; i < both.rows; ++i) {
    std::copy(e.row(i), e.row(i) + e.cols, both.row(i));
    std::copy(g.bridge.row(i), g.bridge.row(i) + g.bridge.cols, both.row(i) + e.cols);
  }
  return std::make_shared<const GalleryGraph>(both, opt.diff);
}

struct Searcher::Ann {
  std::unique_ptr<faiss::Index> code, post, prof;  // prof: unit-length centred log-posteriors
  std::unique_ptr<faiss::Index> bridge;            // the bridge rows, when the score weighs them
  // Evenly spaced rows, copied out whole: the estimate of a query's score mass outside its
  // candidates, scored each query from these contiguous copies rather than the scattered rows.
  std::vector<int64_t> sample;
  std::unique_ptr<FusedScore> sample_score;
};

Searcher::~Searcher() = default;
Searcher::Searcher(Searcher&&) noexcept = default;
Searcher& Searcher::operator=(Searcher&&) noexcept = default;

std::string Searcher::index_type_for(int64_t n, const ScaleOptions& s) {
  const std::string kind = kind_for(n, s), cand = ",cand" + std::to_string(s.candidates);
  if (kind == "exact") return kind;
  return "ivf" + std::to_string(lists_for(n, s)) + (kind == "ivf-sq8" ? ",sq8" : ",flat") +
         ",nprobe" + std::to_string(s.nprobe) + cand;
}
std::string Searcher::index_type() const { return ann_ ? index_type_for(n_, scale_) : "exact"; }

Searcher::Searcher(GalleryArrays g, const RankOptions& opt) {
  auto graph = gallery_graph(g, opt);
  *this = Searcher(std::move(g), opt, std::move(graph));
}

Searcher::Searcher(GalleryArrays g, const RankOptions& opt,
                   std::shared_ptr<const GalleryGraph> graph, const ScaleOptions& scale)
    : n_(g.code.rows), opt_(opt), graph_(std::move(graph)), scale_(scale) {
  check_gallery(g, opt);
  if (graph_ && graph_->size() != n_)
    fail("the gallery graph has ", graph_->size(), " items but the gallery ", n_);
  const std::string kind = kind_for(n_, scale);
  // The sample rows of the mass estimate, copied out before the arrays move into the scorer.
  std::vector<int64_t> sample;
  Matrix sample_code, sample_post, sample_bridge;
  const bool bridge = opt.fuse && opt.fusion.uses_bridge();
  if (kind != "exact" && opt.fuse) {
    const int64_t m = std::min<int64_t>(n_, scale.mass_sample), step = std::max<int64_t>(1, n_ / m);
    for (int64_t i = 0; i < n_ && static_cast<int64_t>(sample.size()) < m; i += step)
      sample.push_back(i);
    const int64_t ns = static_cast<int64_t>(sample.size());
    sample_code = Matrix(ns, g.code.cols);
    sample_post = Matrix(ns, g.post.cols);
    sample_bridge = Matrix(bridge ? ns : 0, g.bridge.cols);
    for (int64_t i = 0; i < ns; ++i) {
      std::copy(g.code.row(sample[i]), g.code.row(sample[i]) + g.code.cols, sample_code.row(i));
      std::copy(g.post.row(sample[i]), g.post.row(sample[i]) + g.post.cols, sample_post.row(i));
      if (bridge)
        std::copy(g.bridge.row(sample[i]), g.bridge.row(sample[i]) + g.bridge.cols,
                  sample_bridge.row(i));
    }
  }
  // The compressed tier keeps the codes and posteriors alone (duet/fusion.h).
  const bool derive = kind == "ivf-sq8";
  if (opt.fuse) {
    fused_ = std::make_shared<const FusedScore>(std::move(g.code), std::move(g.post),
                                                same_prob(opt), opt.fusion, derive,
                                                bridge ? std::move(g.bridge) : Matrix());
  } else {
    code_p_ = prepare_gallery(std::move(g.code), Metric::Euclidean);
  }
  if (kind == "exact") return;
  ann_ = std::make_unique<Ann>();
  const Matrix& code = fused_ ? fused_->codes() : *code_p_.g;
  ann_->code = ivf_index(
      n_, code.cols,
      [&](int64_t i0, int64_t i1, float* out) {
        std::copy(code.row(i0), code.row(i1 - 1) + code.cols, out);
      },
      faiss::METRIC_L2, kind, scale);
  if (!fused_) return;
  const FusedScore& f = *fused_;
  const int64_t C = f.posteriors().cols;
  ann_->post = ivf_index(
      n_, C, [&](int64_t i0, int64_t i1, float* out) { f.sharpened_rows(i0, i1, out); },
      faiss::METRIC_INNER_PRODUCT, kind, scale);
  if (opt.fusion.unseen_gate > 0)
    ann_->prof = ivf_index(
        n_, C, [&](int64_t i0, int64_t i1, float* out) { f.profile_rows(i0, i1, out); },
        faiss::METRIC_INNER_PRODUCT, kind, scale);
  if (const Matrix* b = f.bridge_rows())
    ann_->bridge = ivf_index(
        n_, b->cols,
        [&](int64_t i0, int64_t i1, float* out) {
          std::copy(b->row(i0), b->row(i1 - 1) + b->cols, out);
        },
        faiss::METRIC_INNER_PRODUCT, kind, scale);
  ann_->sample = std::move(sample);
  // A few thousand rows: stored whole (the same numbers as derived ones, and no derivation per
  // query).
  ann_->sample_score =
      std::make_unique<FusedScore>(std::move(sample_code), std::move(sample_post), same_prob(opt),
                                   opt.fusion, false, std::move(sample_bridge));
}

std::vector<int64_t> Searcher::candidates(const Q& q) const {
  const float *zq = q.code, *pq = q.post;
  const int c = scale_.candidates;
  std::vector<int64_t> cand;
  std::vector<float> dist(static_cast<size_t>(c));
  std::vector<faiss::Index::idx_t> ids(static_cast<size_t>(c));
  auto propose = [&](const faiss::Index* index, const float* x) {
    index->search(1, x, c, dist.data(), ids.data());
    for (auto id : ids)
      if (id >= 0) cand.push_back(id);
  };
  propose(ann_->code.get(), zq);
  if (fused_) {
    const int64_t C = fused_->posteriors().cols;
    propose(ann_->post.get(), pq);
    if (ann_->prof) {
      std::vector<float> lq(static_cast<size_t>(C));
      profile_row(pq, C, lq.data());  // the query's profile, as the scorer makes it
      propose(ann_->prof.get(), lq.data());
    }
    if (ann_->bridge) propose(ann_->bridge.get(), q.bridge);
  }
  std::sort(cand.begin(), cand.end());
  cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
  return cand;
}

void Searcher::score_some(const Q& q, bool unseen, const std::vector<int64_t>& rows,
                          float* out) const {
  const float* zq = q.code;
  if (fused_) {
    fused_->score_rows(zq, q.post, unseen, rows, out, q.bridge);
    return;
  }
  const Matrix& code = *code_p_.g;
  for (size_t i = 0; i < rows.size(); ++i) {
    const float* zg = code.row(rows[i]);
    double d = 0;
    for (int64_t j = 0; j < code.cols; ++j)
      d += static_cast<double>(zq[j] - zg[j]) * (zq[j] - zg[j]);
    out[i] = static_cast<float>(-d);
  }
}

double Searcher::mass_outside(const Q& q, bool unseen, const std::vector<int64_t>& cand,
                              float top) const {
  // The candidates hold the peak of the query's score mass; the rest is estimated from the evenly
  // spaced sample rows outside them.
  if (!fused_) return 0;
  std::vector<int64_t> rest;  // positions in the sample
  for (size_t i = 0; i < ann_->sample.size(); ++i)
    if (!std::binary_search(cand.begin(), cand.end(), ann_->sample[i]))
      rest.push_back(static_cast<int64_t>(i));
  if (rest.empty()) return 0;
  std::vector<float> rs(rest.size());
  ann_->sample_score->score_rows(q.code, q.post, unseen, rest, rs.data(), q.bridge);
  double tail = 0;
  for (float v : rs) tail += std::exp(std::min(0.f, v - top));
  return tail * static_cast<double>(n_ - static_cast<int64_t>(cand.size())) /
         static_cast<double>(rest.size());
}

Ranking Searcher::search_candidates(const Q& q, int64_t k) const {
  std::vector<int64_t> cand = candidates(q);
  Ranking r;
  r.unseen = fused_ && fused_->unseen_among(q.post, cand);
  std::vector<float> s(cand.size());
  score_some(q, r.unseen, cand, s.data());
  if (fused_ && graph_) {
    // The blend term divides by the query's score mass over the whole gallery (as the
    // exhaustive ranking does).
    const float top = *std::max_element(s.begin(), s.end());
    double total = 0;
    for (float v : s) total += std::exp(v - top);
    total += mass_outside(q, r.unseen, cand, top);
    // The candidates stand in for the gallery: the shortlist is their best.
    const bool unseen = r.unseen;
    Added added = diffuse_shortlist(
        *graph_, opt_.diff, cand.data(), s.data(), cand.size(), top, total,
        [&](const std::vector<int64_t>& rows, float* out) {
          fused_->score_rows(q.code, q.post, unseen, rows, out, q.bridge);
        },
        s.data());
    cand.insert(cand.end(), added.rows.begin(), added.rows.end());
    s.insert(s.end(), added.score.begin(), added.score.end());
  }
  for (size_t i : best_first(cand, s, k)) r.hits.push_back({cand[i], s[i]});
  return r;
}

ScoreBlockFn Searcher::scores(const QueryArrays& q, bool diffuse, std::vector<char>* unseen) const {
  const int64_t ng = n_;
  if (code_p_.g && q.code.cols != code_p_.g->cols)
    fail("query codes are ", q.code.cols, "-d but gallery codes ", code_p_.g->cols, "-d");
  ScoreBlockFn base;
  if (fused_) {
    FusedScorer f = fused_->scorer(q.code, q.post, nullptr, q.bridge);
    if (unseen) *unseen = f.unseen;
    base = f.score;
  } else {
    base = embedding_scorer(q.code, code_p_);  // -||zq - zg||^2
    if (unseen) unseen->assign(static_cast<size_t>(q.code.rows), 0);
  }
  std::shared_ptr<const GalleryGraph> graph = diffuse ? graph_ : nullptr;
  const DiffusionOptions dopt = opt_.diff;
  const bool whole = dopt.shortlist == 0 || ng <= dopt.shortlist;
  return [base, graph, ng, dopt, whole](int64_t q0, int64_t q1, float* out) {
    std::vector<float> p(graph ? static_cast<size_t>(ng) : 0);
    std::vector<int64_t> all;
    if (graph && !whole) {
      all.resize(static_cast<size_t>(ng));
      std::iota(all.begin(), all.end(), 0);
    }
    for (int64_t qi = q0; qi < q1; ++qi) {
      float* row = out + (qi - q0) * ng;
      base(qi, qi + 1, row);  // one query at a time: see scores() in duet/search.h
      if (!graph) continue;
      // The fused score is a log-probability up to a constant: probabilities up to scale.
      const float top = *std::max_element(row, row + ng);
      double total = 0;
      for (int64_t j = 0; j < ng; ++j) total += p[j] = std::exp(row[j] - top);
      if (whole) {
        graph->rerank(p.data(), row);
        continue;
      }
      // Every row is scored already, so the shortlist adds none.
      diffuse_shortlist(
          *graph, dopt, all.data(), row, all.size(), top, total,
          [](const std::vector<int64_t>&, float*) {}, row);
    }
  };
}

Searcher::Q Searcher::query_row(const float* code_q, const float* post_q,
                                const float* bridge_q) const {
  if (uses_bridge() && !bridge_q)
    fail("the query has no bridge row, and this model's score weighs one");
  return {code_q, post_q, bridge_q};
}

float Searcher::gate_evidence(const float* code_q, const float* post_q,
                              const float* bridge_q) const {
  if (!fused_) fail("internal: the gate belongs to the fused score");
  const Q q = query_row(code_q, post_q, bridge_q);
  if (!ann_) return fused_->gate_evidence(post_q);
  return fused_->gate_evidence_among(post_q, candidates(q));
}

std::vector<float> Searcher::base_scores(const Q& in, bool unseen) const {
  const int64_t d = fused_ ? fused_->codes().cols : code_p_.g->cols;
  const Matrix* b = uses_bridge() ? fused_->bridge_rows() : nullptr;
  QueryArrays q{Matrix(1, fused_ ? fused_->posteriors().cols : 0), Matrix(1, d),
                Matrix(b ? 1 : 0, b ? b->cols : 0)};
  std::copy(in.code, in.code + d, q.code.data.begin());
  if (b) std::copy(in.bridge, in.bridge + b->cols, q.bridge.data.begin());
  std::vector<float> out(static_cast<size_t>(n_));
  if (fused_) {
    std::copy(in.post, in.post + q.post.cols, q.post.data.begin());
    const std::vector<char> gate{static_cast<char>(unseen)};
    fused_->scorer(q.code, q.post, &gate, q.bridge).score(0, 1, out.data());
  } else {
    embedding_scorer(q.code, code_p_)(0, 1, out.data());
  }
  return out;
}

Searcher::Part Searcher::best_rows(const float* code_q, const float* post_q, const float* bridge_q,
                                   bool unseen, int64_t limit) const {
  const Q q = query_row(code_q, post_q, bridge_q);
  Part p;
  std::vector<int64_t> rows;
  std::vector<float> s;
  if (ann_) {
    rows = candidates(q);
    s.resize(rows.size());
    score_some(q, unseen, rows, s.data());
  } else {
    s = base_scores(q, unseen);
    rows.resize(s.size());
    std::iota(rows.begin(), rows.end(), 0);
  }
  // The score mass as search() sums it: exp in float, summed in double.
  p.top = *std::max_element(s.begin(), s.end());
  for (float v : s) p.mass += std::exp(v - p.top);
  if (ann_) p.mass += mass_outside(q, unseen, rows, p.top);
  for (size_t i : best_first(rows, s, limit)) {
    p.rows.push_back(rows[i]);
    p.score.push_back(s[i]);
  }
  return p;
}

std::vector<float> Searcher::row_scores(const float* code_q, const float* post_q,
                                        const float* bridge_q, bool unseen,
                                        const std::vector<int64_t>& rows) const {
  for (int64_t r : rows)
    if (r < 0 || r >= n_) fail("row ", r, " is not in the gallery (", n_, " rows)");
  const Q q = query_row(code_q, post_q, bridge_q);
  std::vector<float> out(rows.size());
  if (ann_) {
    score_some(q, unseen, rows, out.data());
  } else {
    const std::vector<float> all = base_scores(q, unseen);  // as best_rows scores them
    for (size_t i = 0; i < rows.size(); ++i) out[i] = all[static_cast<size_t>(rows[i])];
  }
  return out;
}

std::vector<Ranking> Searcher::search(const QueryArrays& q, int64_t k) const {
  const int64_t nq = q.code.rows, ng = n_;
  const int64_t kk = k <= 0 || k > ng ? ng : k;
  if (uses_bridge() && (q.bridge.rows != nq || q.bridge.cols != fused_->bridge_rows()->cols))
    fail("the queries need ", fused_->bridge_rows()->cols,
         "-d bridge rows (this model's score weighs them)");
  if (ann_ && kk <= scale_.candidates) {
    std::vector<Ranking> out;
    for (int64_t i = 0; i < nq; ++i)
      out.push_back(search_candidates({q.code.row(i), fused_ ? q.post.row(i) : nullptr,
                                       uses_bridge() ? q.bridge.row(i) : nullptr},
                                      kk));
    return out;
  }
  std::vector<char> unseen;
  ScoreBlockFn score = scores(q, true, &unseen);
  std::vector<Ranking> out(static_cast<size_t>(nq));
  std::vector<float> row(static_cast<size_t>(ng));
  std::vector<int64_t> order(static_cast<size_t>(ng));
  for (int64_t i = 0; i < nq; ++i) {
    score(i, i + 1, row.data());
    std::iota(order.begin(), order.end(), 0);
    // The ranking evaluate_scores measures: higher score first, ties by lower row.
    auto before = [&](int64_t a, int64_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    };
    std::partial_sort(order.begin(), order.begin() + kk, order.end(), before);
    Ranking& r = out[static_cast<size_t>(i)];
    r.unseen = unseen[static_cast<size_t>(i)] != 0;
    r.hits.reserve(static_cast<size_t>(kk));
    for (int64_t j = 0; j < kk; ++j) r.hits.push_back({order[j], row[order[j]]});
  }
  return out;
}

}  // namespace duet
