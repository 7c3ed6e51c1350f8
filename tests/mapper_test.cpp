// Phase II with several query domains, on constructed embeddings whose answer is known: each
// domain sees the class means through its own random linear map, so one shared branch cannot
// align them but a branch per domain can.
#include <gtest/gtest.h>

#include <random>

#include "duet/error.h"
#include "duet/inference.h"
#include "duet/phase2.h"
#include "test_util.h"

using namespace duet;

namespace {
constexpr int kClasses = 5, kDim = 16, kPer = 30;

// Rows of `domain`: class c is M * mean_c + noise, with M this domain's random map.
Embeddings make(const std::string& domain, uint32_t map_seed, uint32_t noise_seed) {
  std::mt19937 mr(map_seed), nr(noise_seed), means(7);
  std::normal_distribution<float> n01(0.f, 1.f);
  std::vector<float> M(kDim * kDim), mu(kClasses * kDim);
  for (auto& v : M) v = n01(mr) / 4.f;
  for (auto& v : mu) v = n01(means) * 2.f;
  Embeddings e;
  e.x = Matrix(kClasses * kPer, kDim);
  for (int c = 0; c < kClasses; ++c)
    for (int i = 0; i < kPer; ++i) {
      float* row = e.x.row(c * kPer + i);
      for (int a = 0; a < kDim; ++a) {
        float s = 0;
        for (int b = 0; b < kDim; ++b) s += M[a * kDim + b] * mu[c * kDim + b];
        row[a] = s + 0.1f * n01(nr);
      }
      e.rows.push_back({domain + "/c" + std::to_string(c) + "/" + std::to_string(i) + ".png",
                        "c" + std::to_string(c), domain});
    }
  e.meta["domain"] = domain;
  return e;
}

// Share of query rows whose nearest gallery code is of their class.
double nn_accuracy(const Mapper& m, const Embeddings& q, const Embeddings& g) {
  const Matrix cq = m.map(q.meta.at("domain"), q.x), cg = m.map(g.meta.at("domain"), g.x);
  int right = 0;
  for (int64_t i = 0; i < cq.rows; ++i) {
    double best = 1e30;
    int64_t arg = 0;
    for (int64_t j = 0; j < cg.rows; ++j) {
      double d = 0;
      for (int64_t k = 0; k < cq.cols; ++k) d += std::pow(cq.row(i)[k] - cg.row(j)[k], 2);
      if (d < best) best = d, arg = j;
    }
    right += q.rows[i].cls == g.rows[arg].cls;
  }
  return static_cast<double>(right) / static_cast<double>(cq.rows);
}

MapperOptions small() {
  MapperOptions o;
  o.loss = MapperLoss::Triplet;
  o.margin = 0.5;
  o.hidden = 32;
  o.code = 8;
  o.epochs = 25;
  o.pos = o.neg = 4;
  o.threads = 1;
  return o;
}

}  // namespace

TEST(Mapper, OneBranchPerQueryDomainIntoOneCodeSpace) {
  test::TempDir t;
  const Embeddings sk = make("sketch", 1, 11), ed = make("edges", 2, 12), ph = make("photo", 3, 13);
  auto r = train_mapper({sk, ed}, ph, small(), t / "m.pt");
  EXPECT_EQ(r.queries.at("sketch"), kClasses * kPer);
  EXPECT_EQ(r.queries.at("edges"), kClasses * kPer);
  EXPECT_EQ(r.pairs_per_epoch, 2 * kClasses * kPer * 8);
  auto m = open_mapper(t / "m.pt");
  EXPECT_EQ(m->domains(), (std::vector<std::string>{"sketch", "edges", "photo"}));
  EXPECT_EQ(m->gallery_domain(), "photo");
  // Held-out rows of the same distributions: both query domains find their class.
  const Embeddings sk2 = make("sketch", 1, 21), ed2 = make("edges", 2, 22);
  EXPECT_GT(nn_accuracy(*m, sk2, ph), 0.9);
  EXPECT_GT(nn_accuracy(*m, ed2, ph), 0.9);
  // Each branch is its own: the sketch branch does not align edge embeddings.
  Embeddings wrong = ed2;
  wrong.meta["domain"] = "sketch";
  EXPECT_LT(nn_accuracy(*m, wrong, ph), 0.6);
  EXPECT_NE(test::error_of([&] { m->map("art", sk.x); }).find("it has: sketch, edges, photo"),
            std::string::npos);
}

TEST(Mapper, SharedBranchIsOneNetworkForAllDomains) {
  test::TempDir t;
  const Embeddings sk = make("sketch", 1, 11), ed = make("edges", 2, 12), ph = make("photo", 3, 13);
  MapperOptions o = small();
  o.shared = true;
  o.epochs = 2;
  train_mapper({sk, ed}, ph, o, t / "s.pt");
  auto m = open_mapper(t / "s.pt");
  const Matrix a = m->map("sketch", sk.x), b = m->map("photo", sk.x), c = m->map("edges", sk.x);
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(a.data, c.data);
}

TEST(Mapper, BadDomainsAreErrors) {
  test::TempDir t;
  const Embeddings sk = make("sketch", 1, 11), ph = make("photo", 3, 13);
  EXPECT_NE(test::error_of([&] {
              train_mapper({sk, sk}, ph, small(), t / "m.pt");
            }).find("give each query domain once"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              train_mapper({ph}, ph, small(), t / "m.pt");
            }).find("both of domain 'photo'"),
            std::string::npos);
  Embeddings other = make("art", 4, 14);
  for (auto& r : other.rows) r.cls = "x" + r.cls;  // no class in common with the gallery
  EXPECT_NE(test::error_of([&] {
              train_mapper({sk, other}, ph, small(), t / "m.pt");
            }).find("no art class has photo images"),
            std::string::npos);
  Embeddings anon = sk;
  anon.meta.erase("domain");
  EXPECT_NE(
      test::error_of([&] { train_mapper({anon}, ph, small(), t / "m.pt"); }).find("name no domain"),
      std::string::npos);
}
