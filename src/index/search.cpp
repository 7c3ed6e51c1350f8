// The retrieval path. See duet/search.h.
#include "duet/search.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>

#include "duet/error.h"

namespace duet {

namespace {
void check_gallery(const GalleryArrays& g, const RankOptions& opt) {
  const int64_t n = g.code.rows;
  if (n < 1) fail("the gallery is empty");
  if (opt.fuse && g.post.rows != n)
    fail("gallery has ", n, " codes but ", g.post.rows, " posteriors; they must match row for row");
}

int lists_for(int64_t n, const ScaleOptions& s) {
  return s.lists > 0 ? s.lists : static_cast<int>(std::clamp<double>(std::sqrt(static_cast<double>(n)), 16, 65536));
}

// An IVF-Flat index over the rows of m, trained on an evenly spaced sample (deterministic).
std::unique_ptr<faiss::IndexIVFFlat> ivf(const Matrix& m, int lists, faiss::MetricType metric, int nprobe,
                                         std::unique_ptr<faiss::Index>& quantizer) {
  const int64_t d = m.cols, n = m.rows;
  if (metric == faiss::METRIC_L2) quantizer = std::make_unique<faiss::IndexFlatL2>(d);
  else quantizer = std::make_unique<faiss::IndexFlatIP>(d);
  auto index = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), d, lists, metric);
  const int64_t want = std::min<int64_t>(n, 64LL * lists), step = std::max<int64_t>(1, n / want);
  std::vector<float> sample;
  for (int64_t i = 0; i < n && static_cast<int64_t>(sample.size()) < want * d; i += step)
    sample.insert(sample.end(), m.row(i), m.row(i) + d);
  index->train(static_cast<int64_t>(sample.size()) / d, sample.data());
  index->add(n, m.data.data());
  index->nprobe = nprobe;
  return index;
}
}  // namespace

struct Searcher::Ann {
  std::unique_ptr<faiss::Index> q_code, q_post, q_prof;
  std::unique_ptr<faiss::IndexIVFFlat> code, post, prof;  // prof: unit-length centred log-posteriors
  std::vector<int64_t> sample;  // evenly spaced rows: the estimate of a query's score mass outside its candidates
};

Searcher::~Searcher() = default;
Searcher::Searcher(Searcher&&) noexcept = default;

std::string Searcher::index_type_for(int64_t n, const ScaleOptions& s) {
  if (n <= s.exact_limit) return "exact";
  return "ivf" + std::to_string(lists_for(n, s)) + ",nprobe" + std::to_string(s.nprobe) + ",cand" +
         std::to_string(s.candidates);
}
std::string Searcher::index_type() const { return ann_ ? index_type_for(n_, scale_) : "exact"; }

Searcher::Searcher(const GalleryArrays& g, const RankOptions& opt)
    : Searcher(g, opt, opt.fuse && opt.diffusion && g.code.rows >= 2
                           ? std::make_shared<const GalleryGraph>(g.emb, opt.diff)
                           : nullptr) {}

Searcher::Searcher(const GalleryArrays& g, const RankOptions& opt, std::shared_ptr<const GalleryGraph> graph,
                   const ScaleOptions& scale)
    : n_(g.code.rows), opt_(opt), graph_(std::move(graph)), scale_(scale) {
  check_gallery(g, opt);
  if (graph_ && graph_->size() != n_)
    fail("the gallery graph has ", graph_->size(), " items but the gallery ", n_);
  if (opt.fuse) {
    const double a = opt.prob_a, b = opt.prob_b;
    fused_ = std::make_shared<const FusedScore>(
        g.code, g.post, [a, b](double d) { return 1.0 / (1.0 + std::exp(-(a - b * d))); }, opt.fusion);
  } else {
    code_p_ = prepare_gallery(g.code, Metric::Euclidean);
  }
  if (n_ > scale.exact_limit) {
    ann_ = std::make_unique<Ann>();
    const int lists = lists_for(n_, scale);
    ann_->code = ivf(g.code, lists, faiss::METRIC_L2, scale.nprobe, ann_->q_code);
    if (fused_) {
      ann_->post = ivf(fused_->sharpened(), lists, faiss::METRIC_INNER_PRODUCT, scale.nprobe, ann_->q_post);
      if (opt.fusion.unseen_gate > 0)
        ann_->prof = ivf(l2_normalized(fused_->profiles()), lists, faiss::METRIC_INNER_PRODUCT, scale.nprobe, ann_->q_prof);
    }
    const int64_t m = std::min<int64_t>(n_, scale.mass_sample), step = std::max<int64_t>(1, n_ / m);
    for (int64_t i = 0; i < n_ && static_cast<int64_t>(ann_->sample.size()) < m; i += step) ann_->sample.push_back(i);
  }
}

Ranking Searcher::search_candidates(const float* zq, const float* pq, int64_t k) const {
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
  Ranking r;
  if (fused_) {
    const int64_t C = fused_->posteriors().cols;
    propose(ann_->post.get(), pq);
    if (ann_->prof) {
      Matrix one(1, C);
      std::copy(pq, pq + C, one.data.begin());
      // The query's profile, as the exhaustive scorer makes it (centred log, unit length).
      propose(ann_->prof.get(), l2_normalized(centred_log(one)).data.data());
    }
  }
  std::sort(cand.begin(), cand.end());
  cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
  std::vector<float> s(cand.size());
  if (fused_) {
    const FusionOptions& fo = fused_->options();
    const int64_t C = fused_->posteriors().cols;
    double best = 0;
    for (int64_t g : cand) {
      const float* pg = fused_->posteriors().row(g);
      double dot = 0;
      for (int64_t j = 0; j < C; ++j) dot += static_cast<double>(pq[j]) * pg[j];
      best = std::max(best, dot);
    }
    r.unseen = fo.unseen_gate > 0 && best < fo.unseen_gate;
    fused_->score_rows(zq, pq, r.unseen, cand, s.data());
    if (graph_) {
      // The diffusion starts at the best `seeds` candidates: their graph neighbours join the
      // candidates (scored the same way), so the first hops of the propagation are all there.
      std::vector<size_t> order(cand.size());
      std::iota(order.begin(), order.end(), 0);
      const size_t m = std::min<size_t>(order.size(), static_cast<size_t>(opt_.diff.seeds));
      std::partial_sort(order.begin(), order.begin() + m, order.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
      std::vector<int64_t> more;
      for (size_t i = 0; i < m; ++i) {
        const int64_t g = cand[order[i]];
        for (int64_t e = graph_->csr_start()[g]; e < graph_->csr_start()[g + 1]; ++e) {
          const int64_t o = graph_->csr_col()[e];
          if (!std::binary_search(cand.begin(), cand.end(), o)) more.push_back(o);
        }
      }
      std::sort(more.begin(), more.end());
      more.erase(std::unique(more.begin(), more.end()), more.end());
      if (!more.empty()) {
        std::vector<float> ms(more.size());
        fused_->score_rows(zq, pq, r.unseen, more, ms.data());
        std::vector<int64_t> all;
        std::vector<float> as;
        size_t a = 0, b = 0;
        while (a < cand.size() || b < more.size()) {
          if (b == more.size() || (a < cand.size() && cand[a] < more[b])) all.push_back(cand[a]), as.push_back(s[a++]);
          else all.push_back(more[b]), as.push_back(ms[b++]);
        }
        cand.swap(all);
        s.swap(as);
      }
      const float top = *std::max_element(s.begin(), s.end());
      std::vector<float> p(s.size());
      double total = 0;
      for (size_t i = 0; i < s.size(); ++i) total += p[i] = std::exp(s[i] - top);
      // The blend term divides by the query's score mass over the whole gallery (as the
      // exhaustive ranking does); the candidates hold its peak, and the rest is estimated from the
      // evenly spaced sample rows outside them.
      std::vector<int64_t> rest;
      for (int64_t g : ann_->sample)
        if (!std::binary_search(cand.begin(), cand.end(), g)) rest.push_back(g);
      if (!rest.empty()) {
        std::vector<float> rs(rest.size());
        fused_->score_rows(zq, pq, r.unseen, rest, rs.data());
        double tail = 0;
        for (float v : rs) tail += std::exp(std::min(0.f, v - top));
        total += tail * static_cast<double>(n_ - static_cast<int64_t>(cand.size())) / static_cast<double>(rest.size());
      }
      graph_->rerank_subset(cand, p.data(), s.data(), total);
    }
  } else {
    for (size_t i = 0; i < cand.size(); ++i) {
      const Matrix& code = *code_p_.g;
      const float* zg = code.row(cand[i]);
      double d = 0;
      for (int64_t j = 0; j < code.cols; ++j) d += static_cast<double>(zq[j] - zg[j]) * (zq[j] - zg[j]);
      s[i] = static_cast<float>(-d);
    }
  }
  std::vector<size_t> order(cand.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t kk = std::min<size_t>(order.size(), static_cast<size_t>(k));
  std::partial_sort(order.begin(), order.begin() + kk, order.end(), [&](size_t a, size_t b) {
    return s[a] > s[b] || (s[a] == s[b] && cand[a] < cand[b]);
  });
  for (size_t i = 0; i < kk; ++i) r.hits.push_back({cand[order[i]], s[order[i]]});
  return r;
}

ScoreBlockFn Searcher::scores(const QueryArrays& q, bool diffuse, std::vector<char>* unseen) const {
  const int64_t ng = n_;
  if (code_p_.g && q.code.cols != code_p_.g->cols)
    fail("query codes are ", q.code.cols, "-d but gallery codes ", code_p_.g->cols, "-d");
  ScoreBlockFn base;
  if (fused_) {
    FusedScorer f = fused_->scorer(q.code, q.post);
    if (unseen) *unseen = f.unseen;
    base = f.score;
  } else {
    base = embedding_scorer(q.code, code_p_);  // -||zq - zg||^2
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
  if (ann_ && kk <= scale_.candidates) {
    std::vector<Ranking> out;
    for (int64_t i = 0; i < nq; ++i) out.push_back(search_candidates(q.code.row(i), fused_ ? q.post.row(i) : nullptr, kk));
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
