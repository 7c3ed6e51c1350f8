// Barnes-Hut t-SNE. See duet/tsne.h.
#include "duet/tsne.h"

#include <faiss/IndexFlat.h>
#include <faiss/VectorTransform.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <vector>

#include "duet/error.h"
#include "duet/progress.h"

namespace duet {

namespace {

// Sparse symmetric input affinities P (CSR), summing to 1.
struct Affinities {
  std::vector<int64_t> start, col;
  std::vector<double> p;
};

// Row i's conditional p_{j|i} over its neighbours, its bandwidth found by bisection so that the
// entropy is log(perplexity).
void conditional(const float* d2, int k, double perplexity, double* out) {
  const double target = std::log(perplexity);
  double beta = 1, lo = 0, hi = HUGE_VAL;
  for (int it = 0; it < 200; ++it) {
    double sum = 0, h = 0;
    for (int j = 0; j < k; ++j) sum += out[j] = std::exp(-beta * (d2[j] - d2[0]));
    for (int j = 0; j < k; ++j) h += beta * (d2[j] - d2[0]) * out[j];
    h = h / sum + std::log(sum);  // entropy of the normalised row
    for (int j = 0; j < k; ++j) out[j] /= sum;
    if (std::abs(h - target) < 1e-5) break;
    if (h > target) {
      lo = beta;
      beta = hi == HUGE_VAL ? beta * 2 : (beta + hi) / 2;
    } else {
      hi = beta;
      beta = (beta + lo) / 2;
    }
  }
}

Affinities affinities(const Matrix& x, double perplexity) {
  const int64_t n = x.rows;
  const int k = static_cast<int>(std::min<int64_t>(n - 1, static_cast<int64_t>(3 * perplexity)));
  faiss::IndexFlatL2 index(x.cols);
  index.add(n, x.data.data());
  std::vector<float> d2(static_cast<size_t>(n * (k + 1)));
  std::vector<faiss::Index::idx_t> nb(d2.size());
  index.search(n, x.data.data(), k + 1, d2.data(), nb.data());
  // Conditional rows without the point itself (normally the first hit; dropped by id).
  std::vector<std::vector<std::pair<int64_t, double>>> rows(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> d(k);
    std::vector<int64_t> id(k);
    int m = 0;
    for (int j = 0; j <= k && m < k; ++j) {
      const int64_t c = nb[i * (k + 1) + j];
      if (c == i || c < 0) continue;
      d[m] = d2[i * (k + 1) + j];
      id[m++] = c;
    }
    std::vector<double> p(m);
    conditional(d.data(), m, perplexity, p.data());
    for (int j = 0; j < m; ++j) rows[i].push_back({id[j], p[j]});
  }
  // Symmetrise: p_ij = (p_{j|i} + p_{i|j}) / 2n.
  std::vector<std::vector<std::pair<int64_t, double>>> sym(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    for (const auto& [j, v] : rows[i]) {
      sym[i].push_back({j, v});
      sym[j].push_back({i, v});
    }
  Affinities a;
  a.start.push_back(0);
  for (int64_t i = 0; i < n; ++i) {
    auto& r = sym[i];
    std::sort(r.begin(), r.end());
    for (size_t e = 0; e < r.size();) {
      size_t f = e;
      double v = 0;
      while (f < r.size() && r[f].first == r[e].first) v += r[f++].second;
      a.col.push_back(r[e].first);
      a.p.push_back(v / (2.0 * n));
      e = f;
    }
    a.start.push_back(static_cast<int64_t>(a.col.size()));
  }
  return a;
}

// A quadtree over the map's points: each node holds its cell, point count and centre of mass.
struct QuadTree {
  struct Node {
    double cx, cy, half;    // cell centre and half side
    double mx = 0, my = 0;  // centre of mass
    int64_t count = 0;
    int64_t point = -1;  // the one point of a leaf
    std::array<int32_t, 4> child{-1, -1, -1, -1};
  };
  std::vector<Node> nodes;
  const double* y = nullptr;

  QuadTree(const double* pts, int64_t n) : y(pts) {
    double x0 = HUGE_VAL, x1 = -HUGE_VAL, y0 = HUGE_VAL, y1 = -HUGE_VAL;
    for (int64_t i = 0; i < n; ++i) {
      x0 = std::min(x0, pts[2 * i]), x1 = std::max(x1, pts[2 * i]);
      y0 = std::min(y0, pts[2 * i + 1]), y1 = std::max(y1, pts[2 * i + 1]);
    }
    nodes.reserve(static_cast<size_t>(2 * n + 1));
    nodes.push_back({(x0 + x1) / 2, (y0 + y1) / 2, std::max(x1 - x0, y1 - y0) / 2 + 1e-5});
    for (int64_t i = 0; i < n; ++i) insert(0, i, 0);
  }

  int quadrant(const Node& nd, double px, double py) const {
    return (px > nd.cx ? 1 : 0) + (py > nd.cy ? 2 : 0);
  }

  int32_t child_of(int32_t at, int q) {
    if (nodes[at].child[q] < 0) {
      const Node& nd = nodes[at];
      const double h = nd.half / 2;
      Node c{nd.cx + (q & 1 ? h : -h), nd.cy + (q & 2 ? h : -h), h};
      nodes.push_back(c);
      nodes[at].child[q] = static_cast<int32_t>(nodes.size() - 1);
    }
    return nodes[at].child[q];
  }

  void insert(int32_t at, int64_t i, int depth) {
    const double px = y[2 * i], py = y[2 * i + 1];
    for (;;) {
      Node& nd = nodes[at];
      nd.mx = (nd.mx * nd.count + px) / (nd.count + 1);
      nd.my = (nd.my * nd.count + py) / (nd.count + 1);
      ++nd.count;
      if (nd.count == 1) {  // an empty leaf takes the point
        nd.point = i;
        return;
      }
      // Coincident points (or a very deep cell) stay together in one leaf.
      if (depth > 48) return;
      if (nd.point >= 0) {  // split the leaf: its point moves down
        const int64_t old = nd.point;
        nodes[at].point = -1;
        const int q = quadrant(nodes[at], y[2 * old], y[2 * old + 1]);
        const int32_t c = child_of(at, q);
        Node& cn = nodes[c];
        cn.mx = y[2 * old], cn.my = y[2 * old + 1], cn.count = 1, cn.point = old;
      }
      const int q = quadrant(nodes[at], px, py);
      at = child_of(at, q);
      ++depth;
    }
  }

  // Repulsion on point i: sum of q^2 (y_i - y_j) and of q over all j != i, with cells that look
  // small from i (half side * 2 / distance < theta) taken as one body at their centre of mass.
  void repulse(int64_t i, double theta, double& fx, double& fy, double& sum_q) const {
    const double px = y[2 * i], py = y[2 * i + 1];
    int32_t stack[256];
    int top = 0;
    stack[top++] = 0;
    while (top > 0) {
      const Node& nd = nodes[stack[--top]];
      if (nd.count == 0) continue;
      const double dx = px - nd.mx, dy = py - nd.my, d2 = dx * dx + dy * dy;
      const bool leaf = nd.child[0] < 0 && nd.child[1] < 0 && nd.child[2] < 0 && nd.child[3] < 0;
      if (leaf && nd.point == i && nd.count == 1) continue;
      if (leaf || (2 * nd.half) * (2 * nd.half) < theta * theta * d2) {
        // A leaf holding i among coincident points counts the others only.
        const double cnt = static_cast<double>(nd.count) - (leaf && nd.point == i ? 1 : 0);
        const double q = 1.0 / (1.0 + d2);
        sum_q += cnt * q;
        fx += cnt * q * q * dx;
        fy += cnt * q * q * dy;
        continue;
      }
      for (int32_t c : nd.child)
        if (c >= 0 && top < 256) stack[top++] = c;
    }
  }
};

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

Matrix tsne(const Matrix& x_in, const TsneOptions& opt) {
  const int64_t n = x_in.rows;
  if (n < 2) fail("t-SNE needs at least 2 points (got ", n, ")");
  if (!(opt.perplexity > 0)) fail("--perplexity must be positive (got ", opt.perplexity, ")");
  if (opt.perplexity * 3 >= static_cast<double>(n))
    log_line("t-SNE: perplexity " + std::to_string(opt.perplexity) + " is large for " +
             std::to_string(n) + " points; using every other point as a neighbour");
  if (opt.iterations < 1 || opt.exaggeration_iterations < 0)
    fail("t-SNE iterations must be positive");
  if (!(opt.theta >= 0)) fail("--theta must be non-negative (got ", opt.theta, ")");
  for (float v : x_in.data)
    if (!std::isfinite(v)) fail("t-SNE: the input has a non-finite value");

  // PCA first: less noise in the neighbour search, and a cheaper one.
  Matrix x = x_in;
  if (opt.pca_dims > 0 && x.cols > opt.pca_dims && n > opt.pca_dims) {
    faiss::PCAMatrix pca(static_cast<int>(x.cols), opt.pca_dims);
    pca.train(n, x.data.data());
    Matrix r(n, opt.pca_dims);
    pca.apply_noalloc(n, x.data.data(), r.data.data());
    x = std::move(r);
  }
  const Affinities P =
      affinities(x, std::min(opt.perplexity, (n - 1) / 3.0 > 0 ? (n - 1) / 3.0 : 1.0));

  // Seeded start: N(0, 1e-4^2) by Box-Muller on splitmix64.
  std::vector<double> y(static_cast<size_t>(2 * n)), vel(y.size(), 0.0), gain(y.size(), 1.0),
      grad(y.size());
  uint64_t s = opt.seed * 0x9E3779B97F4A7C15ull + 12345;
  for (size_t i = 0; i < y.size(); i += 2) {
    const double u1 = (static_cast<double>(splitmix(s) >> 11) + 1) / 9007199254740993.0;
    const double u2 = static_cast<double>(splitmix(s) >> 11) / 9007199254740992.0;
    const double r = std::sqrt(-2 * std::log(u1)) * 1e-4;
    y[i] = r * std::cos(2 * M_PI * u2);
    y[i + 1] = r * std::sin(2 * M_PI * u2);
  }
  // Learning rate as openTSNE/sklearn "auto": n / exaggeration / 4, at least 50.
  const double exaggeration = 12, eta = std::max(50.0, static_cast<double>(n) / exaggeration / 4);
  std::vector<double> rep(static_cast<size_t>(2 * n)), qsum(static_cast<size_t>(n));
  Progress bar("t-SNE", opt.iterations);
  for (int it = 0; it < opt.iterations; ++it) {
    const bool early = it < opt.exaggeration_iterations;
    const double ex = early ? exaggeration : 1, momentum = early ? 0.5 : 0.8;
    const QuadTree tree(y.data(), n);
#pragma omp parallel for schedule(dynamic, 64)
    for (int64_t i = 0; i < n; ++i) {
      double fx = 0, fy = 0, q = 0;
      tree.repulse(i, opt.theta, fx, fy, q);
      rep[2 * i] = fx, rep[2 * i + 1] = fy, qsum[i] = q;
    }
    // Z in a fixed order: the same sum on any thread count.
    double z = 0;
    for (int64_t i = 0; i < n; ++i) z += qsum[i];
    z = std::max(z, 1e-300);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      double ax = 0, ay = 0;
      for (int64_t e = P.start[i]; e < P.start[i + 1]; ++e) {
        const int64_t j = P.col[e];
        const double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
        const double w = P.p[e] / (1.0 + dx * dx + dy * dy);
        ax += w * dx, ay += w * dy;
      }
      grad[2 * i] = 4 * (ex * ax - rep[2 * i] / z);
      grad[2 * i + 1] = 4 * (ex * ay - rep[2 * i + 1] / z);
    }
    // Gradient descent with momentum and per-coordinate gains (delta-bar-delta).
    for (size_t k = 0; k < y.size(); ++k) {
      gain[k] = (grad[k] > 0) != (vel[k] > 0) ? gain[k] + 0.2 : std::max(0.01, gain[k] * 0.8);
      vel[k] = momentum * vel[k] - eta * gain[k] * grad[k];
      y[k] += vel[k];
    }
    // Keep the map centred (the gradient is translation invariant).
    double mx = 0, my = 0;
    for (int64_t i = 0; i < n; ++i) mx += y[2 * i], my += y[2 * i + 1];
    mx /= n, my /= n;
    for (int64_t i = 0; i < n; ++i) y[2 * i] -= mx, y[2 * i + 1] -= my;
    bar.tick();
  }
  bar.finish();
  Matrix out(n, 2);
  for (size_t k = 0; k < y.size(); ++k) out.data[k] = static_cast<float>(y[k]);
  return out;
}

double trustworthiness(const Matrix& x, const Matrix& y, int k) {
  const int64_t n = x.rows;
  if (y.rows != n || k < 1 || 2 * k >= n)
    fail("trustworthiness: needs matching rows and 1 <= k < n/2");
  auto d2 = [](const Matrix& m, int64_t i, int64_t j) {
    double s = 0;
    for (int64_t c = 0; c < m.cols; ++c)
      s += std::pow(static_cast<double>(m.row(i)[c]) - m.row(j)[c], 2);
    return s;
  };
  double penalty = 0;
#pragma omp parallel for reduction(+ : penalty) schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i) {
    // Rank of every j in the input space (1 = nearest), and the map's k nearest.
    std::vector<std::pair<double, int64_t>> in, map;
    for (int64_t j = 0; j < n; ++j)
      if (j != i) in.push_back({d2(x, i, j), j}), map.push_back({d2(y, i, j), j});
    std::sort(in.begin(), in.end());
    std::vector<int64_t> rank(static_cast<size_t>(n));
    for (size_t r = 0; r < in.size(); ++r) rank[in[r].second] = static_cast<int64_t>(r) + 1;
    std::partial_sort(map.begin(), map.begin() + k, map.end());
    for (int m = 0; m < k; ++m) penalty += std::max<int64_t>(0, rank[map[m].second] - k);
  }
  return 1.0 - 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)) * penalty;
}

}  // namespace duet
