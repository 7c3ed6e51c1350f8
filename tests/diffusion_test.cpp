// Diffusion re-ranking against values solved by hand on a gallery whose graph is known.
#include "duet/diffusion.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "duet/error.h"

using namespace duet;

namespace {
// Two clusters, {a1, a2} and {b1, b2}, on the unit circle. With k = 1 each item's nearest
// neighbour is its partner, so the graph is two edges and, normalised, S swaps the partners:
// S = [[0,1],[1,0]] per cluster. Then (I - alpha S)^-1 = [[1,alpha],[alpha,1]] / (1 - alpha^2), and
// a query seeded on a1 alone gets f(a1) = 1 / (1 + alpha), f(a2) = alpha / (1 + alpha), f(b) = 0.
Matrix two_clusters() {
  Matrix m(4, 2);
  const float pts[4][2] = {{1.f, 0.f}, {0.96f, 0.28f}, {0.f, 1.f}, {-0.28f, 0.96f}};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) m.row(i)[j] = pts[i][j];
  return m;
}
}  // namespace

TEST(Diffusion, HandSolvedTwoClusters) {
  DiffusionOptions o;
  o.k = 1;
  o.alpha = 0.5;
  o.seeds = 1;
  o.blend = 0;
  GalleryGraph g(two_clusters(), o);
  EXPECT_EQ(g.size(), 4);
  // Before: a1 first, then b1 and b2 ahead of a2.
  const std::vector<float> p = {0.4f, 0.05f, 0.3f, 0.25f};
  std::vector<float> out(4);
  g.rerank(p.data(), out.data());
  EXPECT_NEAR(out[0], 2.0 / 3, 1e-6);
  EXPECT_NEAR(out[1], 1.0 / 3, 1e-6);
  EXPECT_NEAR(out[2], 0.0, 1e-9);
  EXPECT_NEAR(out[3], 0.0, 1e-9);

  // With the blend the original distribution (p / sum p, sum = 1 here) is added back: a2 now
  // outranks b1 and b2 (0.3833 vs 0.3 and 0.25), and the b's keep their order.
  o.blend = 1;
  GalleryGraph gb(two_clusters(), o);
  gb.rerank(p.data(), out.data());
  EXPECT_NEAR(out[0], 2.0 / 3 + 0.4, 1e-6);
  EXPECT_NEAR(out[1], 1.0 / 3 + 0.05, 1e-6);
  EXPECT_NEAR(out[2], 0.3, 1e-6);
  EXPECT_NEAR(out[3], 0.25, 1e-6);

  // Scores are probabilities up to scale: multiplying them changes nothing.
  std::vector<float> p10 = p, out10(4);
  for (auto& v : p10) v *= 10;
  gb.rerank(p10.data(), out10.data());
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out10[i], out[i], 1e-6);
}

TEST(Diffusion, TwoSeedsAndNoDiffusion) {
  DiffusionOptions o;
  o.k = 1;
  o.alpha = 0.5;
  o.seeds = 2;  // a1 (0.4) and b1 (0.3): y = (4/7, 0, 3/7, 0)
  o.blend = 0;
  const std::vector<float> p = {0.4f, 0.05f, 0.3f, 0.25f};
  std::vector<float> out(4);
  GalleryGraph(two_clusters(), o).rerank(p.data(), out.data());
  EXPECT_NEAR(out[0], 4.0 / 7 * 2 / 3, 1e-6);
  EXPECT_NEAR(out[1], 4.0 / 7 / 3, 1e-6);
  EXPECT_NEAR(out[2], 3.0 / 7 * 2 / 3, 1e-6);
  EXPECT_NEAR(out[3], 3.0 / 7 / 3, 1e-6);
  // alpha = 0: nothing moves, the seeds keep their share.
  o.alpha = 0;
  GalleryGraph(two_clusters(), o).rerank(p.data(), out.data());
  EXPECT_NEAR(out[0], 4.0 / 7, 1e-6);
  EXPECT_NEAR(out[1], 0.0, 1e-9);
  EXPECT_NEAR(out[2], 3.0 / 7, 1e-6);
}

TEST(Diffusion, BadInputIsAnError) {
  DiffusionOptions o;
  EXPECT_THROW(GalleryGraph(Matrix(1, 2), o), Error);
  o.alpha = 1;
  EXPECT_THROW(GalleryGraph(two_clusters(), o), Error);
  o = DiffusionOptions{};
  o.k = 0;
  EXPECT_THROW(GalleryGraph(two_clusters(), o), Error);
  o = DiffusionOptions{};
  Matrix nan_row = two_clusters();
  nan_row.row(2)[1] = std::nanf("");
  EXPECT_THROW(GalleryGraph(nan_row, o), Error);
  GalleryGraph g(two_clusters(), o);
  std::vector<float> bad = {0.5f, -0.1f, 0.2f, 0.1f}, out(4);
  EXPECT_THROW(g.rerank(bad.data(), out.data()), Error);
}

// Above its exact limit the graph takes each item's neighbours from the inverted lists nearest
// its own: on 4,000 items in 20 clusters (64-d, within-cluster spread of the same order as the
// clusters' distances, so lists cut through clusters) it keeps at least 95% of the exact graph's
// edges with their weights, and two builds are the same graph.
TEST(Diffusion, ListGraphKeepsTheExactEdges) {
  const int64_t n = 4000, d = 64, C = 20;
  Matrix x(n, d);
  uint64_t state = 7;
  auto gauss = [&] {  // Box-Muller on a splitmix64 stream
    auto u = [&] {
      state += 0x9e3779b97f4a7c15ull;
      uint64_t z = state;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return (static_cast<double>((z ^ (z >> 31)) >> 11) + 0.5) / 9007199254740992.0;
    };
    return static_cast<float>(std::sqrt(-2 * std::log(u())) * std::cos(6.283185307179586 * u()));
  };
  Matrix centre(C, d);
  for (float& v : centre.data) v = gauss();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) x.row(i)[j] = centre.row(i % C)[j] + 1.5f * gauss();
  DiffusionOptions o;
  const GalleryGraph exact(x, o), lists(x, o, 1000), again(x, o, 1000);
  EXPECT_EQ(lists.csr_start(), again.csr_start());
  EXPECT_EQ(lists.csr_col(), again.csr_col());
  EXPECT_EQ(lists.csr_weight(), again.csr_weight());
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto b = lists.csr_col().begin() + lists.csr_start()[i],
               e = lists.csr_col().begin() + lists.csr_start()[i + 1];
    for (int64_t k = exact.csr_start()[i]; k < exact.csr_start()[i + 1]; ++k)
      kept += std::find(b, e, exact.csr_col()[k]) != e;
  }
  const double recall = static_cast<double>(kept) / static_cast<double>(exact.csr_col().size());
  EXPECT_GT(recall, 0.95);
  EXPECT_LT(recall, 1.0 + 1e-12);
  std::printf("list graph: %.4f of the exact graph's %zu edges\n", recall, exact.csr_col().size());
}
