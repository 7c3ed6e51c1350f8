// The fused score against values worked out by hand on posteriors built for the purpose.
#include "duet/fusion.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "duet/error.h"
#include "test_util.h"

using namespace duet;

namespace {
using test::rows;
std::vector<float> score_all(const FusedScorer& f, int64_t nq, int64_t ng) {
  std::vector<float> out(static_cast<size_t>(nq * ng));
  f.score(0, nq, out.data());
  return out;
}
double exp_neg(double d) { return std::exp(-d); }
// The plain product: no sharpening, no gate.
FusionOptions plain() {
  FusionOptions o;
  o.photo_power = 1;
  o.unseen_gate = 0;
  return o;
}
// cosine of log p - mean(log p), by hand
double profile_cos(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> la, lb;
  double ma = 0, mb = 0;
  for (double x : a) ma += std::log(x) / a.size();
  for (double x : b) mb += std::log(x) / b.size();
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = std::log(a[i]) - ma, y = std::log(b[i]) - mb;
    dot += x * y, na += x * x, nb += y * y;
  }
  return dot / std::sqrt(na * nb);
}
}  // namespace

TEST(Fusion, CodeProbabilityTimesPosteriorProduct) {
  // Query code at the origin; photo codes at distance 5 and 0.
  Matrix zq = rows({{0, 0}}), zg = rows({{3, 4}, {0, 0}});
  Matrix pq = rows({{0.8f, 0.2f}}), pg = rows({{0.6f, 0.4f}, {0.5f, 0.5f}});
  FusionOptions o = plain();
  auto s = score_all(fused_scorer(zq, zg, exp_neg, pq, pg, o), 1, 2);
  EXPECT_NEAR(s[0], -5 + std::log(0.8 * 0.6 + 0.2 * 0.4), 1e-5);
  EXPECT_NEAR(s[1], 0 + std::log(0.5), 1e-5);

  // Photo power 2: (0.6, 0.4) -> (0.36, 0.16) / 0.52; (0.5, 0.5) stays.
  o.photo_power = 2;
  s = score_all(fused_scorer(zq, zg, exp_neg, pq, pg, o), 1, 2);
  EXPECT_NEAR(s[0], -5 + std::log((0.8 * 0.36 + 0.2 * 0.16) / 0.52), 1e-5);
  EXPECT_NEAR(s[1], std::log(0.5), 1e-5);
}

TEST(Fusion, UnseenGateSwitchesToProfiles) {
  // Codes equal, so only the posteriors rank. Query 0 is confident and its class is in the
  // gallery (photo 2, dot 0.8*0.9+0.1*0.05*2 = 0.73); query 1 is flat, like a class neither
  // encoder learnt: its best dot is 0.39 (photo 2), but photo 0 has its profile.
  Matrix zq = rows({{0, 0}, {0, 0}}), zg = rows({{0, 0}, {0, 0}, {0, 0}});
  const std::vector<std::vector<double>> q = {{0.8, 0.1, 0.1}, {0.4, 0.35, 0.25}};
  const std::vector<std::vector<double>> g = {
      {0.45, 0.35, 0.2}, {0.7, 0.05, 0.25}, {0.9, 0.05, 0.05}};
  Matrix pq(2, 3), pg(3, 3);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) pq.row(i)[j] = static_cast<float>(q[i][j]);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) pg.row(i)[j] = static_cast<float>(g[i][j]);
  auto dot = [&](int a, int b) {
    return q[a][0] * g[b][0] + q[a][1] * g[b][1] + q[a][2] * g[b][2];
  };

  FusionOptions o =
      plain();  // no gate: photo 2 then 1 then 0 for the flat query (dots 0.39, 0.36, 0.3525)
  auto f = fused_scorer(zq, zg, exp_neg, pq, pg, o);
  EXPECT_EQ(f.unseen, std::vector<char>({0, 0}));
  auto s = score_all(f, 2, 3);
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(s[3 + j], std::log(dot(1, j)), 1e-5);
  EXPECT_GT(s[3 + 1], s[3 + 0]);

  o.unseen_gate = 0.5;
  o.unseen_post = 0.25;
  o.unseen_profile = 4;
  f = fused_scorer(zq, zg, exp_neg, pq, pg, o);
  EXPECT_EQ(f.unseen, std::vector<char>({0, 1}));
  s = score_all(f, 2, 3);
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(s[j], std::log(dot(0, j)), 1e-5);  // the confident query is untouched
    EXPECT_NEAR(s[3 + j], 0.25 * std::log(dot(1, j)) + 4 * profile_cos(q[1], g[j]), 1e-4);
  }
  // The flat query's own profile now ranks photo 0 first.
  EXPECT_GT(s[3 + 0], s[3 + 1]);
  EXPECT_GT(s[3 + 0], s[3 + 2]);

  // Scores come out the same block by block as all at once.
  std::vector<float> one(3);
  f.score(1, 2, one.data());
  for (int j = 0; j < 3; ++j) EXPECT_FLOAT_EQ(one[j], s[3 + j]);

  // Row by row (the candidate path) agrees with the block scorer, for any rows in any order,
  // and the gate over some rows is the block scorer's gate when they include the best photo.
  FusedScore fs(zg, pg, exp_neg, o);
  const std::vector<int64_t> some = {2, 0, 2};
  for (int qi = 0; qi < 2; ++qi) {
    EXPECT_EQ(fs.unseen_among(pq.row(qi), {0, 1, 2}), f.unseen[qi] != 0) << qi;
    std::vector<float> r(3);
    fs.score_rows(zq.row(qi), pq.row(qi), f.unseen[qi], some, r.data());
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(r[j], s[qi * 3 + some[j]], 1e-5) << qi << " " << j;
  }
  // Without photo 2 even the confident query's best dot (0.59) stays above the gate, but not
  // with photo 0 alone (0.415).
  EXPECT_FALSE(fs.unseen_among(pq.row(0), {1}));
  EXPECT_TRUE(fs.unseen_among(pq.row(0), {0}));
}

// A gallery that derives its rows when scored (the compressed tier) gives the stored gallery's
// numbers: the same sharpened posteriors and profiles bit for bit, the same row scores, and
// block scores within float rounding. The sharpened row and profile against hand values.
TEST(Fusion, DerivedRowsAreTheStoredRows) {
  const std::vector<float> p = {0.5f, 0.3f, 0.2f, 0.0f};
  std::vector<float> sh(4), pr(4);
  sharpen_row(p.data(), 4, 2.0, sh.data());
  EXPECT_NEAR(sh[0], 0.25 / 0.38, 1e-7);
  EXPECT_NEAR(sh[1], 0.09 / 0.38, 1e-7);
  EXPECT_EQ(sh[3], 0.f);
  profile_row(p.data(), 4, pr.data());
  {
    std::vector<double> l = {std::log(0.5), std::log(0.3), std::log(0.2), std::log(1e-6)};
    const double mean = (l[0] + l[1] + l[2] + l[3]) / 4;
    double n2 = 0;
    for (double& x : l) n2 += (x -= mean) * x;
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(pr[j], l[j] / std::sqrt(n2), 1e-6) << j;
  }

  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.01f, 1.f);
  const int64_t ng = 300, C = 7, d = 5;
  Matrix zg(ng, d), pg(ng, C), zq(4, d), pq(4, C);
  for (Matrix* m : {&zg, &pg, &zq, &pq})
    for (auto& v : m->data) v = u(rng);
  for (Matrix* m : {&pg, &pq})
    for (int64_t i = 0; i < m->rows; ++i) {
      float z = 0;
      for (int64_t j = 0; j < C; ++j) z += m->row(i)[j];
      for (int64_t j = 0; j < C; ++j) m->row(i)[j] /= z;
    }
  // Queries 0 and 1, and gallery rows 0 to 9, peaked on one class: the first two queries pass
  // the gate, the flat ones do not.
  for (auto [m, n] : {std::pair{&pg, 10}, std::pair{&pq, 2}})
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < C; ++j) m->row(i)[j] = j == i % C ? 0.88f : 0.02f;
  FusionOptions o;
  o.unseen_gate = 0.3;  // some queries gated, some not
  FusedScore stored(zg, pg, exp_neg, o), derived(zg, pg, exp_neg, o, true);
  std::vector<float> a(ng * C), b(ng * C);
  stored.sharpened_rows(0, ng, a.data());
  derived.sharpened_rows(0, ng, b.data());
  EXPECT_EQ(a, b);
  stored.profile_rows(0, ng, a.data());
  derived.profile_rows(0, ng, b.data());
  EXPECT_EQ(a, b);
  auto fs = stored.scorer(zq, pq), fd = derived.scorer(zq, pq);
  EXPECT_EQ(fs.unseen, fd.unseen);
  const auto ss = score_all(fs, 4, ng), sd = score_all(fd, 4, ng);
  std::vector<int64_t> all(ng);
  std::iota(all.begin(), all.end(), 0);
  for (int64_t q = 0; q < 4; ++q) {
    std::vector<float> rs(ng), rd(ng);
    stored.score_rows(zq.row(q), pq.row(q), fs.unseen[q], all, rs.data());
    derived.score_rows(zq.row(q), pq.row(q), fs.unseen[q], all, rd.data());
    EXPECT_EQ(rs, rd) << q;
    for (int64_t j = 0; j < ng; ++j)
      ASSERT_NEAR(sd[q * ng + j], ss[q * ng + j], 1e-5) << q << " " << j;
  }
  EXPECT_NE(std::count(fs.unseen.begin(), fs.unseen.end(), 1), 0);
  EXPECT_NE(std::count(fs.unseen.begin(), fs.unseen.end(), 0), 0);
}

TEST(Fusion, ShapeMismatchIsAnError) {
  Matrix zq = rows({{0, 0}}), zg = rows({{0, 0}});
  Matrix p3 = rows({{0.2f, 0.3f, 0.5f}}), p2 = rows({{0.5f, 0.5f}});
  EXPECT_THROW(fused_scorer(zq, zg, exp_neg, p3, p2, plain()), Error);
  EXPECT_THROW(fused_scorer(zq, rows({{0, 0}, {1, 1}}), exp_neg, p2, p2, plain()), Error);
  FusionOptions bad = plain();
  bad.photo_power = 0;
  EXPECT_THROW(fused_scorer(zq, zg, exp_neg, p2, p2, bad), Error);
}

TEST(Fusion, BridgeCosineAddsItsWeighedTerm) {
  // The same pair as above, plus bridge rows: the score gains w * b_q . g_p, with the seen weight
  // for a query the gate passes and the unseen weight for one it stops.
  Matrix zq = rows({{0, 0}}), zg = rows({{3, 4}, {0, 0}});
  Matrix pq = rows({{0.8f, 0.2f}}), pg = rows({{0.6f, 0.4f}, {0.5f, 0.5f}});
  Matrix bq = rows({{0.6f, 0.8f}}), bg = rows({{1, 0}, {0, 1}});
  FusionOptions o = plain();
  o.bridge = 2;
  o.unseen_bridge = 5;
  auto s = score_all(fused_scorer(zq, zg, exp_neg, pq, pg, o, bq, bg), 1, 2);
  EXPECT_NEAR(s[0], -5 + std::log(0.8 * 0.6 + 0.2 * 0.4) + 2 * 0.6, 1e-5);
  EXPECT_NEAR(s[1], std::log(0.5) + 2 * 0.8, 1e-5);
  // A gate above every dot (best 0.56): unseen, so w_p = 0, the profile at 2 and the bridge at 5.
  o.unseen_gate = 0.9;
  o.unseen_post = 0;
  o.unseen_profile = 2;
  s = score_all(fused_scorer(zq, zg, exp_neg, pq, pg, o, bq, bg), 1, 2);
  EXPECT_NEAR(s[0], -5 + 2 * profile_cos({0.8, 0.2}, {0.6, 0.4}) + 5 * 0.6, 1e-5);
  EXPECT_NEAR(s[1], 0 + 2 * 0.0 + 5 * 0.8, 1e-5);  // a flat posterior has no profile
  // score_rows agrees, stored or derived rows alike.
  for (bool derive : {false, true}) {
    FusedScore fs(zg, pg, exp_neg, o, derive, bg);
    std::vector<float> r(2);
    fs.score_rows(zq.row(0), pq.row(0), true, {0, 1}, r.data(), bq.row(0));
    EXPECT_NEAR(r[0], s[0], 1e-5);
    EXPECT_NEAR(r[1], s[1], 1e-5);
  }
  // Weights without bridge rows, or rows of the wrong width, are refused.
  EXPECT_THROW(fused_scorer(zq, zg, exp_neg, pq, pg, o), Error);
  EXPECT_THROW(fused_scorer(zq, zg, exp_neg, pq, pg, o, rows({{1, 0, 0}}), bg), Error);
  o.bridge = -1;
  EXPECT_THROW(fused_scorer(zq, zg, exp_neg, pq, pg, o, bq, bg), Error);
}
