// Gallery graph and diffusion re-ranking. See duet/diffusion.h.
#include "duet/diffusion.h"

#include <cblas.h>
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "duet/error.h"
#include "duet/progress.h"
#include "duet/score.h"

namespace duet {

namespace {
void check_options(const DiffusionOptions& opt) {
  if (opt.k < 1) fail("diffusion: k must be at least 1 (got ", opt.k, ")");
  if (!(opt.alpha >= 0 && opt.alpha < 1))
    fail("diffusion: alpha must be in [0, 1) (got ", opt.alpha, ")");
  if (opt.seeds < 1) fail("diffusion: seeds must be at least 1 (got ", opt.seeds, ")");
  if (!(opt.blend >= 0)) fail("diffusion: blend must be non-negative (got ", opt.blend, ")");
  if (opt.shortlist < 0 || (opt.shortlist > 0 && opt.shortlist < opt.seeds))
    fail("diffusion: the shortlist must be 0 (the whole gallery) or at least the seeds (",
         opt.seeds, "), got ", opt.shortlist);
}
}  // namespace

GalleryGraph::GalleryGraph(int64_t n, const DiffusionOptions& opt, std::vector<int64_t> start,
                           std::vector<int64_t> col, std::vector<float> w)
    : n_(n), opt_(opt), start_(std::move(start)), col_(std::move(col)), w_(std::move(w)) {
  check_options(opt);
  bool ok = n_ >= 2 && start_.size() == static_cast<size_t>(n_ + 1) && start_[0] == 0 &&
            start_.back() == static_cast<int64_t>(col_.size()) && col_.size() == w_.size();
  for (int64_t i = 0; ok && i < n_; ++i) ok = start_[i] <= start_[i + 1];
  for (size_t e = 0; ok && e < col_.size(); ++e)
    ok = col_[e] >= 0 && col_[e] < n_ && std::isfinite(w_[e]) && w_[e] >= 0;
  if (!ok) fail("diffusion: the stored gallery graph is inconsistent (corrupt index?)");
}

void GalleryGraph::set_options(const DiffusionOptions& opt) {
  check_options(opt);
  opt_ = opt;
}

namespace {
// The kk nearest rows (inner product of unit rows x) of every row, approximately: k-means (FAISS,
// fixed seed, trained on evenly spaced rows as the search's IVF is) over sqrt(n) lists; each
// list's rows against the rows of the kProbe lists nearest its centroid, one matrix product per
// list. Fills sim / nb [n, kk] best first (-1 where a row has fewer candidates).
void list_neighbours(const Matrix& x, int64_t kk, float* sim, faiss::Index::idx_t* nb) {
  constexpr int kProbe = 8;
  const int64_t n = x.rows, d = x.cols;
  const int lists =
      static_cast<int>(std::clamp<double>(std::sqrt(static_cast<double>(n)), 16, 65536));
  const int64_t want = std::min<int64_t>(n, 64LL * lists), step = std::max<int64_t>(1, n / want);
  std::vector<float> sample;
  for (int64_t i = 0; i < n && static_cast<int64_t>(sample.size()) < want * d; i += step)
    sample.insert(sample.end(), x.row(i), x.row(i) + d);
  faiss::ClusteringParameters cp;
  cp.seed = 1234;
  faiss::Clustering km(static_cast<int>(d), lists, cp);
  faiss::IndexFlatL2 centroids(d);
  km.train(static_cast<faiss::Index::idx_t>(sample.size()) / d, sample.data(), centroids);
  std::vector<faiss::Index::idx_t> own(static_cast<size_t>(n));
  std::vector<float> dist(static_cast<size_t>(n));
  centroids.search(n, x.data.data(), 1, dist.data(), own.data());
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(lists));
  for (int64_t i = 0; i < n; ++i) members[static_cast<size_t>(own[i])].push_back(i);
  const int probe = std::min(kProbe, lists);
  std::vector<faiss::Index::idx_t> near(static_cast<size_t>(lists) * probe);
  std::vector<float> near_d(near.size());
  centroids.search(lists, km.centroids.data(), probe, near_d.data(), near.data());
  std::fill(nb, nb + n * kk, -1);
  std::fill(sim, sim + n * kk, -INFINITY);
  std::vector<float> q, c, s;
  Progress bar("gallery graph", lists);
  for (int l = 0; l < lists; ++l, bar.tick()) {
    const auto& rows = members[static_cast<size_t>(l)];
    if (rows.empty()) continue;
    std::vector<int64_t> cand;
    for (int p = 0; p < probe; ++p) {
      if (near[static_cast<size_t>(l) * probe + p] < 0) continue;
      const auto& m = members[static_cast<size_t>(near[static_cast<size_t>(l) * probe + p])];
      cand.insert(cand.end(), m.begin(), m.end());
    }
    std::sort(cand.begin(), cand.end());
    const int64_t nq = static_cast<int64_t>(rows.size()), nc = static_cast<int64_t>(cand.size());
    q.resize(static_cast<size_t>(nq * d));
    c.resize(static_cast<size_t>(nc * d));
    s.resize(static_cast<size_t>(nq * nc));
    for (int64_t i = 0; i < nq; ++i)
      std::copy(x.row(rows[i]), x.row(rows[i]) + d, q.data() + i * d);
    for (int64_t j = 0; j < nc; ++j)
      std::copy(x.row(cand[j]), x.row(cand[j]) + d, c.data() + j * d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq), static_cast<int>(nc),
                static_cast<int>(d), 1.0f, q.data(), static_cast<int>(d), c.data(),
                static_cast<int>(d), 0.0f, s.data(), static_cast<int>(nc));
    std::vector<int64_t> order(static_cast<size_t>(nc));
    for (int64_t i = 0; i < nq; ++i) {
      const float* si = s.data() + i * nc;
      std::iota(order.begin(), order.end(), 0);
      const int64_t m = std::min<int64_t>(kk, nc);
      std::partial_sort(order.begin(), order.begin() + m, order.end(), [&](int64_t a, int64_t b) {
        return si[a] > si[b] || (si[a] == si[b] && cand[a] < cand[b]);
      });
      for (int64_t j = 0; j < m; ++j) {
        sim[rows[i] * kk + j] = si[order[j]];
        nb[rows[i] * kk + j] = cand[order[j]];
      }
    }
  }
  bar.finish();
}
}  // namespace

GalleryGraph::GalleryGraph(const Matrix& features, const DiffusionOptions& opt, int64_t exact_limit)
    : n_(features.rows), opt_(opt) {
  if (n_ < 2) fail("diffusion: the gallery needs at least 2 items (got ", n_, ")");
  check_options(opt);
  const int64_t d = features.cols;
  for (size_t i = 0; i < features.data.size(); ++i)
    if (!std::isfinite(features.data[i]))
      fail("diffusion: gallery features of row ", int64_t(i) / d, " are not finite");
  const Matrix x = l2_normalized(features);
  // k + 1 nearest by cosine: the first is normally the item itself, dropped below by id.
  const int64_t kk = std::min<int64_t>(opt.k + 1, n_);
  std::vector<float> sim(static_cast<size_t>(n_ * kk));
  std::vector<faiss::Index::idx_t> nb(static_cast<size_t>(n_ * kk));
  if (n_ <= exact_limit) {
    faiss::IndexFlatIP index(d);
    index.add(n_, x.data.data());
    index.search(n_, x.data.data(), kk, sim.data(), nb.data());
  } else {
    list_neighbours(x, kk, sim.data(), nb.data());
  }

  // Symmetric weights: an edge exists when either end has the other among its k nearest.
  std::vector<std::map<int64_t, float>> adj(static_cast<size_t>(n_));
  for (int64_t i = 0; i < n_; ++i) {
    int kept = 0;
    for (int64_t j = 0; j < kk && kept < opt.k; ++j) {
      const int64_t o = nb[i * kk + j];
      if (o < 0 || o == i) continue;
      ++kept;
      const float s = std::max(sim[i * kk + j], 0.f), w = s * s * s;
      if (w <= 0) continue;
      adj[i][o] = std::max(adj[i][o], w);
      adj[o][i] = std::max(adj[o][i], w);
    }
  }
  std::vector<double> deg(static_cast<size_t>(n_), 0);
  for (int64_t i = 0; i < n_; ++i)
    for (const auto& [o, w] : adj[i]) deg[i] += w;
  start_.assign(static_cast<size_t>(n_ + 1), 0);
  for (int64_t i = 0; i < n_; ++i) {
    for (const auto& [o, w] : adj[i]) {
      col_.push_back(o);
      w_.push_back(static_cast<float>(w / std::sqrt(deg[i] * deg[o])));
    }
    start_[i + 1] = static_cast<int64_t>(col_.size());
  }
}

namespace {
// The label propagation of duet/diffusion.h over one CSR graph of n nodes.
// total: the mass the blend term divides by (<= 0: the sum of probs).
void propagate(size_t n, const int64_t* start, const int64_t* col, const float* w,
               const DiffusionOptions& opt, const float* probs, float* out, double total = 0) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!(probs[i] >= 0) || !std::isfinite(probs[i]))
      fail("diffusion: query scores must be finite and non-negative");
    sum += probs[i];
  }
  if (!(total > 0)) total = sum;
  // y: the top `seeds` scores, as a distribution.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  const size_t m = std::min<size_t>(static_cast<size_t>(opt.seeds), n);
  std::partial_sort(order.begin(), order.begin() + m, order.end(), [&](size_t a, size_t b) {
    return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
  });
  std::vector<double> y(n, 0), f(n), next(n);
  double top = 0;
  for (size_t i = 0; i < m; ++i) top += probs[order[i]];
  for (size_t i = 0; i < m; ++i) y[order[i]] = top > 0 ? probs[order[i]] / top : 1.0 / m;
  // f = alpha S f + (1 - alpha) y converges to (1 - alpha)(I - alpha S)^-1 y since ||alpha S|| < 1;
  // the error shrinks by alpha per step, so stop once a step changes f by under 1e-7 of its mass.
  f = y;
  const double a = opt.alpha;
  // Large graphs (a whole gallery above ~16k items) take both cores; each node's update is the
  // same either way, only the order of the stopping test's sum differs.
  const bool parallel = n >= (1u << 14);
  for (int it = 0; it < 1000; ++it) {
    double change = 0;
#pragma omp parallel for schedule(static) reduction(+ : change) if (parallel)
    for (size_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t e = start[i]; e < start[i + 1]; ++e) s += w[e] * f[col[e]];
      next[i] = a * s + (1 - a) * y[i];
      change += std::abs(next[i] - f[i]);
    }
    f.swap(next);
    if (change < 1e-7) break;
  }
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(f[i] + opt.blend * (total > 0 ? probs[i] / total : 0.0));
}
}  // namespace

void GalleryGraph::rerank(const float* probs, float* out) const {
  propagate(static_cast<size_t>(n_), start_.data(), col_.data(), w_.data(), opt_, probs, out);
}

void GalleryGraph::rerank_subset(const std::vector<int64_t>& nodes, const float* probs, float* out,
                                 double total) const {
  // The sub-graph the nodes span, with the whole graph's weights: votes that would leave it are
  // dropped, which for a query's best candidates is the far, faint tail of the propagation.
  const size_t m = nodes.size();
  std::vector<int64_t> start(m + 1, 0), col;
  std::vector<float> w;
  for (size_t i = 0; i < m; ++i) {
    const int64_t g = nodes[i];
    if (g < 0 || g >= n_ || (i > 0 && nodes[i - 1] >= g))
      fail("internal: rerank_subset needs sorted, distinct rows");
    for (int64_t e = start_[g]; e < start_[g + 1]; ++e) {
      auto it = std::lower_bound(nodes.begin(), nodes.end(), col_[e]);
      if (it == nodes.end() || *it != col_[e]) continue;
      col.push_back(it - nodes.begin());
      w.push_back(w_[e]);
    }
    start[i + 1] = static_cast<int64_t>(col.size());
  }
  propagate(m, start.data(), col.data(), w.data(), opt_, probs, out, total);
}

}  // namespace duet
