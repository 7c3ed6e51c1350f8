// Gallery graph and diffusion re-ranking. See duet/diffusion.h.
#include "duet/diffusion.h"

#include <faiss/IndexFlat.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "duet/error.h"
#include "duet/metrics.h"

namespace duet {

namespace {
void check_options(const DiffusionOptions& opt) {
  if (opt.k < 1) fail("diffusion: k must be at least 1 (got ", opt.k, ")");
  if (!(opt.alpha >= 0 && opt.alpha < 1)) fail("diffusion: alpha must be in [0, 1) (got ", opt.alpha, ")");
  if (opt.seeds < 1) fail("diffusion: seeds must be at least 1 (got ", opt.seeds, ")");
  if (!(opt.blend >= 0)) fail("diffusion: blend must be non-negative (got ", opt.blend, ")");
  if (opt.shortlist < 0 || (opt.shortlist > 0 && opt.shortlist < opt.seeds))
    fail("diffusion: the shortlist must be 0 (the whole gallery) or at least the seeds (", opt.seeds, "), got ",
         opt.shortlist);
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

GalleryGraph::GalleryGraph(const Matrix& features, const DiffusionOptions& opt) : n_(features.rows), opt_(opt) {
  if (n_ < 2) fail("diffusion: the gallery needs at least 2 items (got ", n_, ")");
  check_options(opt);
  const int64_t d = features.cols;
  for (size_t i = 0; i < features.data.size(); ++i)
    if (!std::isfinite(features.data[i])) fail("diffusion: gallery features of row ", int64_t(i) / d, " are not finite");
  const Matrix x = l2_normalized(features);
  // k + 1 nearest by cosine: the first is normally the item itself, dropped below by id.
  const int64_t kk = std::min<int64_t>(opt.k + 1, n_);
  faiss::IndexFlatIP index(d);
  index.add(n_, x.data.data());
  std::vector<float> sim(static_cast<size_t>(n_ * kk));
  std::vector<faiss::Index::idx_t> nb(static_cast<size_t>(n_ * kk));
  index.search(n_, x.data.data(), kk, sim.data(), nb.data());

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
void propagate(size_t n, const int64_t* start, const int64_t* col, const float* w, const DiffusionOptions& opt,
               const float* probs, float* out, double total = 0) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!(probs[i] >= 0) || !std::isfinite(probs[i])) fail("diffusion: query scores must be finite and non-negative");
    sum += probs[i];
  }
  if (!(total > 0)) total = sum;
  // y: the top `seeds` scores, as a distribution.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  const size_t m = std::min<size_t>(static_cast<size_t>(opt.seeds), n);
  std::partial_sort(order.begin(), order.begin() + m, order.end(),
                    [&](size_t a, size_t b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); });
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
    if (g < 0 || g >= n_ || (i > 0 && nodes[i - 1] >= g)) fail("internal: rerank_subset needs sorted, distinct rows");
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
