// bench/synthetic.h — synthetic galleries with the real dimensions, for the latency benches.
//
// n gallery items and nq queries of C classes: codes scattered around a centre per class,
// posteriors peaked on each item's class (a fifth of the queries flat: an unseen class), and a
// graph linking each item to 10 random items of its class with the weights a symmetric
// normalised k-NN graph would have (degree about 20).
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "duet/search.h"

namespace duet::bench {

struct Synthetic {
  GalleryArrays g;
  std::shared_ptr<const GalleryGraph> graph;
  QueryArrays q;
};

inline Synthetic synthetic(int64_t n, int64_t nq, int C, int dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Matrix centre(C, dim);
  for (auto& v : centre.data) v = 3.f * normal(rng);
  auto fill = [&](int64_t rows, float noise, bool some_flat, Matrix& code, Matrix& post,
                  std::vector<int>* cls) {
    code = Matrix(rows, dim);
    post = Matrix(rows, C);
    for (int64_t i = 0; i < rows; ++i) {
      const int c = static_cast<int>(rng() % C);
      if (cls) cls->push_back(c);
      for (int j = 0; j < dim; ++j) code.row(i)[j] = centre.row(c)[j] + noise * normal(rng);
      const bool flat = some_flat && i % 5 == 4;
      double z = 0;
      for (int j = 0; j < C; ++j)
        z += post.row(i)[j] = std::exp((j == c && !flat ? 4.f : 0.f) + normal(rng));
      for (int j = 0; j < C; ++j) post.row(i)[j] = static_cast<float>(post.row(i)[j] / z);
    }
  };
  Synthetic s;
  std::vector<int> cls;
  fill(n, 2.f, false, s.g.code, s.g.post, &cls);
  fill(nq, 3.f, true, s.q.code, s.q.post, nullptr);
  // Graph: each item linked to 10 random items of its class, weights as the k-NN graph's would
  // be after symmetric normalisation (degree about 20). Built as CSR from the drawn edges, so 10M
  // items take a few bytes beyond the graph itself.
  std::vector<std::vector<int64_t>> of(C);
  for (int64_t i = 0; i < n; ++i) of[cls[i]].push_back(i);
  std::vector<int64_t> drawn(static_cast<size_t>(n * 10));  // -1: drew itself
  std::vector<int64_t> start(static_cast<size_t>(n + 1), 0);
  for (int64_t i = 0; i < n; ++i) {
    const auto& same = of[cls[i]];
    for (int e = 0; e < 10; ++e) {
      const int64_t o = same[rng() % same.size()];
      drawn[static_cast<size_t>(i * 10 + e)] = o == i ? -1 : o;
      if (o != i) ++start[i + 1], ++start[o + 1];
    }
  }
  for (int64_t i = 0; i < n; ++i) start[i + 1] += start[i];
  std::vector<int64_t> col(static_cast<size_t>(start[n])), fill_at(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i)
    for (int e = 0; e < 10; ++e)
      if (const int64_t o = drawn[static_cast<size_t>(i * 10 + e)]; o >= 0) {
        col[fill_at[i]++] = o;
        col[fill_at[o]++] = i;
      }
  drawn = {};
  fill_at = {};
  // Each row sorted and without repeats, compacted in place.
  int64_t at = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto b = col.begin() + start[i], e = col.begin() + start[i + 1];
    std::sort(b, e);
    const auto last = std::unique(b, e);
    start[i] = at;
    at = std::copy(b, last, col.begin() + at) - col.begin();
  }
  start[n] = at;
  col.resize(static_cast<size_t>(at));
  col.shrink_to_fit();
  std::vector<float> w(col.size(), 1.f / 20.f);
  s.graph = std::make_shared<const GalleryGraph>(n, DiffusionOptions{}, std::move(start),
                                                 std::move(col), std::move(w));
  return s;
}

}  // namespace duet::bench
