// The bridge (duet/bridge.h) against values worked out by hand, and its fit on data built so that
// the answer is known; Phase I's knowledge-preservation term by hand.
#include "duet/bridge.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/inference.h"
#include "phase1/preserve.h"
#include "test_util.h"

using namespace duet;

namespace {
using test::rows;
std::string tmp(const std::string& name) {
  return "/tmp/duet_bridge_" + std::to_string(::getpid()) + "_" + name;
}
}  // namespace

TEST(Bridge, MapsByHandValues) {
  // F = 2, D = 1. Gallery: f - mu at unit length: (4, 5) - (1, 1) = (3, 4) -> (0.6, 0.8).
  Bridge b("photo", rows({{1, 1}}));
  Matrix g = b.map("photo", rows({{4, 5}, {1, 1}}), Matrix());
  EXPECT_NEAR(g.row(0)[0], 0.6, 1e-6);
  EXPECT_NEAR(g.row(0)[1], 0.8, 1e-6);
  EXPECT_EQ(g.row(1)[0], 0.f);  // a zero row stays zero
  // Query: x = [unit(a - mu_q), unit(e)] = [(0, 1), 1] for a = (2, 3), mu_q = (2, 1), e = (-2);
  // e at unit length is -1. y = x W + c with W = [[1, 0], [0, 2], [3, 0]], c = (1, 1):
  // (0*1 + 1*0 + -1*3 + 1, 0*0 + 1*2 + 0 + 1) = (-2, 3) -> (-2, 3) / sqrt(13).
  b.add_query("sketch", rows({{2, 1}}), rows({{1, 0}, {0, 2}, {3, 0}}), rows({{1, 1}}));
  Matrix q = b.map("sketch", rows({{2, 3}}), rows({{-2}}));
  EXPECT_NEAR(q.row(0)[0], -2 / std::sqrt(13.0), 1e-6);
  EXPECT_NEAR(q.row(0)[1], 3 / std::sqrt(13.0), 1e-6);
  EXPECT_EQ(b.domains(), (std::vector<std::string>{"photo", "sketch"}));
  EXPECT_THROW(b.map("art", rows({{2, 3}}), rows({{-2}})), Error);
  EXPECT_THROW(b.map("sketch", rows({{2, 3, 4}}), rows({{-2}})), Error);
  EXPECT_THROW(b.map("sketch", rows({{2, 3}}), rows({{-2, 1}})), Error);

  // A file holds the same map; damaged or foreign files are refused with their name.
  const std::string f = tmp("hand.pt");
  b.save(f);
  auto r = open_bridge(f);
  Matrix q2 = r->map("sketch", rows({{2, 3}}), rows({{-2}}));
  EXPECT_EQ(q2.data, q.data);
  EXPECT_EQ(r->gallery_domain(), "photo");
  write_file_atomic(f, "not a bridge");
  EXPECT_THROW(open_bridge(f), Error);
  EXPECT_THROW(open_bridge(tmp("missing.pt")), Error);
  std::remove(f.c_str());
}

TEST(Bridge, FitRecoversALinearMapAndItsTargets) {
  // Gallery: 3 classes x 4 photos in F = 3; each sketch is made from one photo, and its frozen
  // features are that photo's gallery row, rotated. With the source weight 1 and a tiny ridge,
  // the fit must send a sketch back to its own photo's row.
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.f, 1.f);
  const int64_t F = 3, D = 2;
  BridgeRows gallery;
  std::map<std::string, BridgeRows> queries;
  BridgeRows& sk = queries["sketch"];
  const int n = 12;
  gallery.frozen.x = Matrix(n, F);
  sk.frozen.x = Matrix(n, F);
  sk.emb = Matrix(n, D);
  for (int i = 0; i < n; ++i) {
    const std::string cls = "c" + std::to_string(i % 3),
                      photo = "photo/" + cls + "/p" + std::to_string(i),
                      sketch = "sketch/" + cls + "/p" + std::to_string(i) + "-1";
    for (int64_t j = 0; j < F; ++j) gallery.frozen.x.row(i)[j] = 1.0f + noise(rng);
    gallery.frozen.rows.push_back({photo, cls, "photo"});
    sk.frozen.rows.push_back({sketch, cls, "sketch"});
    sk.source.push_back(i);  // sketch i was drawn from photo i
    for (int64_t j = 0; j < D; ++j) sk.emb.row(i)[j] = noise(rng);
  }
  // The photos' centred unit rows, as the bridge makes them; the sketches' frozen features: a
  // rotation of those (so x -> target is linear in the frozen half).
  Bridge ref("photo", Matrix(1, F));
  {
    Matrix mu(1, F);
    for (int i = 0; i < n; ++i)
      for (int64_t j = 0; j < F; ++j) mu.data[j] += gallery.frozen.x.row(i)[j] / n;
    ref = Bridge("photo", mu);
  }
  const Matrix g = ref.map("photo", gallery.frozen.x, Matrix());
  for (int i = 0; i < n; ++i) {
    const float* r = g.row(i);
    float* s = sk.frozen.x.row(i);
    s[0] = r[1], s[1] = -r[0], s[2] = r[2];
  }
  BridgeOptions opt;
  opt.ridge = 1e-6;
  opt.source_weight = 1.0;
  const std::string f = tmp("fit.pt");
  BridgeTrainResult res = train_bridge("photo", gallery, queries, opt, f);
  EXPECT_EQ(res.gallery_rows, n);
  EXPECT_EQ(res.with_source.at("sketch"), n);
  auto b = open_bridge(f);
  const Matrix q = b->map("sketch", sk.frozen.x, sk.emb);
  for (int i = 0; i < n; ++i) {
    int best = -1;
    double best_dot = -2, own = 0;
    for (int k = 0; k < n; ++k) {
      double dot = 0;
      for (int64_t j = 0; j < F; ++j) dot += q.row(i)[j] * g.row(k)[j];
      if (dot > best_dot) best_dot = dot, best = k;
      if (k == i) own = dot;
    }
    EXPECT_EQ(best, i) << "sketch " << i;
    EXPECT_GT(own, 0.98) << "sketch " << i;
  }
  // Source weight 0: every sketch of a class goes to the direction of its class mean.
  opt.source_weight = 0;
  opt.ridge = 1e-6;
  sk.frozen.x = Matrix(n, F);
  for (int i = 0; i < n; ++i)
    sk.frozen.x.row(i)[i % 3] = 1;  // one-hot of the class: exactly linear
  train_bridge("photo", gallery, queries, opt, f);
  b = open_bridge(f);
  const Matrix q0 = b->map("sketch", sk.frozen.x, sk.emb);
  for (int c = 0; c < 3; ++c) {
    std::vector<double> mean(F, 0.0);
    for (int i = c; i < n; i += 3)
      for (int64_t j = 0; j < F; ++j) mean[j] += g.row(i)[j];
    double norm = 0, dot = 0;
    for (double v : mean) norm += v * v;
    for (int64_t j = 0; j < F; ++j) dot += q0.row(c)[j] * mean[j];
    EXPECT_NEAR(dot / std::sqrt(norm), 1.0, 1e-3) << "class " << c;
  }
  // Bad input: options out of range, a class without gallery rows, widths that disagree.
  opt.ridge = 0;
  EXPECT_THROW(train_bridge("photo", gallery, queries, opt, f), Error);
  opt.ridge = 1;
  queries["sketch"].frozen.rows[0].cls = "unknown";
  EXPECT_THROW(train_bridge("photo", gallery, queries, opt, f), Error);
  queries["sketch"].frozen.rows[0].cls = "c0";
  queries["sketch"].emb = Matrix(n - 1, D);
  EXPECT_THROW(train_bridge("photo", gallery, queries, opt, f), Error);
  queries["sketch"].emb = Matrix(n, D);
  queries["sketch"].source.pop_back();  // a row without its source entry
  EXPECT_THROW(train_bridge("photo", gallery, queries, opt, f), Error);
  std::remove(f.c_str());
}

TEST(Preserve, KlOfTheTeacherAgainstTheStudentByHand) {
  // Teacher (0.5, 0.5, 0) and (0.2, 0.3, 0.5); student logits (0, ln 3, 0) -> q = (0.2, 0.6, 0.2)
  // and (0, 0, 0) -> q = 1/3 each. KL = sum t ln(t / q), a zero entry adding nothing.
  auto t = torch::tensor({{0.5, 0.5, 0.0}, {0.2, 0.3, 0.5}}, torch::kFloat64);
  auto l = torch::tensor({{0.0, std::log(3.0), 0.0}, {0.0, 0.0, 0.0}}, torch::kFloat64);
  const double want = 0.5 * std::log(0.5 / 0.2) + 0.5 * std::log(0.5 / 0.6) +
                      0.2 * std::log(0.2 * 3) + 0.3 * std::log(0.3 * 3) + 0.5 * std::log(0.5 * 3);
  EXPECT_NEAR(preservation_kl(t, l).item<double>(), want, 1e-9);
  // A student that is the teacher has nothing left to learn.
  EXPECT_NEAR(preservation_kl(t.slice(0, 1, 2), torch::log(t.slice(0, 1, 2))).item<double>(), 0.0,
              1e-12);
}

TEST(Preserve, SoftenByHand) {
  // (0.9, 0.1) at t = 4: (0.9^0.25, 0.1^0.25) / their sum; at t = 1 unchanged; a zero row stays
  // zero.
  auto p = torch::tensor({{0.9, 0.1}, {0.0, 0.0}}, torch::kFloat64);
  const double a = std::pow(0.9, 0.25), b = std::pow(0.1, 0.25);
  auto q = soften(p, 4.0);
  EXPECT_NEAR(q[0][0].item<double>(), a / (a + b), 1e-9);
  EXPECT_NEAR(q[0][1].item<double>(), b / (a + b), 1e-9);
  EXPECT_EQ(q[1].abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::allclose(soften(p, 1.0)[0], p[0], 1e-9, 1e-12));
  // The student matching it at t has logits log p (up to a constant): nothing left to learn.
  EXPECT_NEAR(preservation_kl(q.slice(0, 0, 1), torch::log(p.slice(0, 0, 1)) / 4.0).item<double>(),
              0.0, 1e-12);
}
