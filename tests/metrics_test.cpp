// Metrics against hand-computed values, and relevant_ranks against a brute-force full sort.
#include "duet/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "duet/error.h"

using namespace duet;

namespace {
// Evaluates a fixed score matrix [nq, ng].
RetrievalMetrics eval_fixed(const std::vector<std::vector<float>>& s, const std::vector<int>& ql,
                            const std::vector<int>& gl, std::vector<int> ks = {2, 10}) {
  const int64_t ng = static_cast<int64_t>(gl.size());
  EvalOptions opt;
  opt.ks = ks;
  opt.block = 1;  // exercise the block loop
  return evaluate_scores(
      static_cast<int64_t>(ql.size()), ng,
      [&](int64_t q0, int64_t q1, float* out) {
        for (int64_t q = q0; q < q1; ++q) std::copy(s[q].begin(), s[q].end(), out + (q - q0) * ng);
      },
      ql, gl, opt);
}
}  // namespace

TEST(Metrics, HandComputedSingleQuery) {
  // Ranking: g0(A) g1(B) g2(A) g3(B) -> relevant at ranks 1 and 3.
  auto m = eval_fixed({{0.9f, 0.8f, 0.7f, 0.6f}}, {0}, {0, 1, 0, 1});
  EXPECT_NEAR(m.map_all, (1.0 / 1 + 2.0 / 3) / 2, 1e-12);
  EXPECT_NEAR(m.map_at[2], (1.0 / 1) / 2,
              1e-12);  // only rank 1 is within K=2; divide by min(R,K)=2
  EXPECT_NEAR(m.p_at[2], 0.5, 1e-12);
  // K larger than the gallery: AP@K equals AP@all, P@K still divides by K.
  EXPECT_NEAR(m.map_at[10], m.map_all, 1e-12);
  EXPECT_NEAR(m.p_at[10], 2.0 / 10, 1e-12);
  EXPECT_EQ(m.queries, 1);
  EXPECT_EQ(m.skipped, 0);
}

TEST(Metrics, TiesBrokenByGalleryRow) {
  // All scores tie: the ranking is the gallery order, so relevant g1, g3 sit at ranks 2 and 4.
  auto m = eval_fixed({{0.5f, 0.5f, 0.5f, 0.5f}}, {0}, {1, 0, 1, 0});
  EXPECT_NEAR(m.map_all, (1.0 / 2 + 2.0 / 4) / 2, 1e-12);
  // A tie between one relevant and one irrelevant item above the rest: lower row first.
  auto m2 = eval_fixed({{0.1f, 0.9f, 0.9f, 0.2f}}, {0}, {0, 1, 0, 1});
  // order: g1(B) g2(A) g3(B) g0(A) -> ranks 2 and 4
  EXPECT_NEAR(m2.map_all, (1.0 / 2 + 2.0 / 4) / 2, 1e-12);
}

TEST(Metrics, QueriesWithoutRelevantItemsAreSkipped) {
  auto m = eval_fixed({{0.9f, 0.1f}, {0.3f, 0.4f}}, {0, 7}, {0, 1});
  EXPECT_EQ(m.queries, 1);
  EXPECT_EQ(m.skipped, 1);
  EXPECT_NEAR(m.map_all, 1.0, 1e-12);
  auto none = eval_fixed({{0.9f}}, {3}, {1});
  EXPECT_EQ(none.queries, 0);
  EXPECT_EQ(none.skipped, 1);
  EXPECT_EQ(none.map_all, 0);
}

TEST(Metrics, AveragesOverQueries) {
  // q0: perfect (AP 1); q1 (class B): relevant g1 at rank 2 -> AP 0.5.
  auto m = eval_fixed({{0.9f, 0.1f, 0.0f}, {0.9f, 0.5f, 0.1f}}, {0, 1}, {0, 1, 2});
  EXPECT_NEAR(m.map_all, 0.75, 1e-12);
  EXPECT_NEAR(m.p_at[2], (0.5 + 0.5) / 2, 1e-12);
}

TEST(Metrics, EmbeddingsEuclideanAndCosine) {
  // 1-d points: query at 0; gallery at 3 (A), 1 (B), -2 (A).
  Matrix q(1, 1), g(3, 1);
  q.data = {0};
  g.data = {3, 1, -2};
  EvalOptions opt;
  opt.metric = Metric::Euclidean;
  opt.ks = {1};
  auto m = evaluate(q, g, {"A"}, {"A", "B", "A"}, opt);
  // distances 3, 1, 2 -> order g1(B) g2(A) g0(A): ranks 2, 3
  EXPECT_NEAR(m.map_all, (1.0 / 2 + 2.0 / 3) / 2, 1e-9);
  // Cosine on 2-d: direction matters, length does not.
  Matrix q2(1, 2), g2(3, 2);
  q2.data = {1, 0};
  g2.data = {10, 1, 0, 1, 0.5f, 0};
  opt.metric = Metric::Cosine;
  auto c = evaluate(q2, g2, {"A"}, {"B", "A", "A"}, opt);
  // cos: g0 ~0.995, g1 0, g2 1 -> order g2(A) g0(B) g1(A): ranks 1, 3
  EXPECT_NEAR(c.map_all, (1.0 + 2.0 / 3) / 2, 1e-9);
}

TEST(Metrics, RejectsMismatchedInputs) {
  Matrix q(2, 3), g(4, 5);
  EXPECT_THROW(evaluate(q, g, {"a", "b"}, {"a", "b", "c", "d"}, {}), Error);
  Matrix g2(4, 3);
  EXPECT_THROW(evaluate(q, g2, {"a"}, {"a", "b", "c", "d"}, {}), Error);
  EXPECT_THROW(evaluate(q, g2, {"a", "b"}, {"a", "b", "c"}, {}), Error);
  EXPECT_THROW(parse_metric("manhattan"), Error);
}

TEST(Metrics, RelevantRanksMatchFullSort) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    int n = 1 + rng() % 60;
    std::vector<float> s(n);
    std::vector<uint8_t> rel(n);
    for (int i = 0; i < n; ++i) {
      s[i] = static_cast<float>(rng() % 5);  // many ties on purpose
      rel[i] = rng() % 3 == 0;
    }
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return s[a] > s[b]; });
    std::vector<int64_t> expect;
    for (int r = 0; r < n; ++r)
      if (rel[order[r]]) expect.push_back(r + 1);
    EXPECT_EQ(relevant_ranks(s.data(), rel.data(), n), expect) << "trial " << trial;
  }
}
