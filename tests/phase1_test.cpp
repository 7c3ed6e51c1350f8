// Phase I's knowledge-preservation teacher (duet/phase1.h), through train_encoder on a few real
// sketches with the tiny backbone: a given teacher trains exactly as the encoder's own views do
// when it holds the same distributions, and otherwise it trains another encoder.
#include "duet/phase1.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>
#include <string>

#include "backbone/nets.h"
#include "duet/augment.h"
#include "duet/dataset.h"
#include "duet/embeddings.h"
#include "duet/image.h"
#include "duet/inference.h"
#include "phase1/trunk_cache.h"
#include "test_util.h"

using namespace duet;

namespace {
// The category split's sketches of its first `classes` classes.
Dataset few_sketches(const std::string& shared, int classes) {
  Dataset full = load_split(shared + "/data/sketchy-subset/splits/category.tsv");
  const auto cls = full.classes();
  const std::set<std::string> keep(cls.begin(), cls.begin() + classes);
  Dataset d = full;
  d.samples.clear();
  for (const auto& s : full.samples)
    if (s.domain == "sketch" && keep.count(s.cls)) d.samples.push_back(s);
  return d;
}
float max_abs_diff(const Matrix& a, const Matrix& b) {
  float m = 0;
  for (size_t i = 0; i < a.data.size(); ++i) m = std::max(m, std::abs(a.data[i] - b.data[i]));
  return m;
}
// Both teachers go through one check: a teacher (`good`, set as o.*field) `cols` wide is refused
// with `width_error`, and one with no row for any train image is refused too.
void expect_bad_teachers_refused(const Dataset& d, EncoderTrainOptions o,
                                 Embeddings EncoderTrainOptions::*field, const Embeddings& good,
                                 int64_t cols, const std::string& width_error) {
  test::TempDir t;
  Embeddings narrow = good;
  narrow.x = Matrix(good.x.rows, cols);
  o.*field = narrow;
  EXPECT_NE(test::error_of([&] { train_encoder(d, "sketch", o, t / "x.pt"); }).find(width_error),
            std::string::npos);
  Embeddings strangers = good;
  for (auto& r : strangers.rows) r.path = "elsewhere/" + r.path;
  o.*field = strangers;
  EXPECT_NE(test::error_of([&] {
              train_encoder(d, "sketch", o, t / "x.pt");
            }).find("none of its train images"),
            std::string::npos);
}
}  // namespace

TEST(Phase1, GivenTeacherTrainsAsTheViewsOwnWhenTheyAgree) {
  const std::string shared = test::shared_or_empty();
  if (shared.empty()) GTEST_SKIP() << "no shared folder";
  const Dataset d = few_sketches(shared, 3);
  ASSERT_GT(d.samples.size(), 60u);

  EncoderTrainOptions o;
  o.backbone.arch = "mobilenet_v1_025";
  o.views = o.tta_views =
      1;  // one view: the encoder's own teacher is frozen_features' distribution
  o.frozen_epochs = 3;
  o.finetune_epochs = 1;
  o.preserve = 5;
  test::TempDir t;
  train_encoder(d, "sketch", o, t / "own.pt", t / "own.npy");

  // The frozen backbone's ImageNet distributions: one per sample, rows sum to 1.
  Embeddings teacher = frozen_features(d, "sketch", o, true);
  ASSERT_EQ(teacher.x.rows, static_cast<int64_t>(d.samples.size()));
  ASSERT_EQ(teacher.x.cols, 1001);
  for (int64_t i = 0; i < teacher.x.rows; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < teacher.x.cols; ++j) sum += teacher.x.row(i)[j];
    ASSERT_NEAR(sum, 1.0, 1e-4);
  }
  o.teacher = teacher;
  train_encoder(d, "sketch", o, t / "given.pt", t / "given.npy");
  const Matrix own = read_embeddings(t / "own.npy").x, given = read_embeddings(t / "given.npy").x;
  EXPECT_LT(max_abs_diff(own, given), 1e-4);

  // Each sample taught its neighbour's distribution: another encoder.
  Embeddings rolled = teacher;
  for (size_t i = 0; i < rolled.rows.size(); ++i)
    rolled.rows[i].path = teacher.rows[(i + 1) % teacher.rows.size()].path;
  o.teacher = rolled;
  train_encoder(d, "sketch", o, t / "rolled.pt", t / "rolled.npy");
  EXPECT_GT(max_abs_diff(own, read_embeddings(t / "rolled.npy").x), 1e-3);

  // A teacher of the wrong width, or with no row for any train image, is refused.
  expect_bad_teachers_refused(d, o, &EncoderTrainOptions::teacher, teacher, 10,
                              "has 10 outputs, not 1001");
}

// The trunk cache keeps the image and its mirror (views 0, 1) apart from the seeded views: another
// seed reuses them and computes only its own; the frozen features kept beside it are reused too.
TEST(Phase1, TrunkCacheSharesTheUnseededViewsBetweenSeeds) {
  const std::string shared = test::shared_or_empty();
  if (shared.empty()) GTEST_SKIP() << "no shared folder";
  Dataset d = load_split(shared + "/data/sketchy-subset/splits/category.tsv");
  std::vector<Sample> few;
  for (const auto& s : d.samples)
    if (s.domain == "photo" && few.size() < 12) few.push_back(s);
  auto net = open_backbone_net("mobilenet_v1_025", "");
  net->eval();
  const int split = net->num_stages() - 2;
  test::TempDir t;
  Ledger l0, l1, lm;
  TrunkCache a = build_trunk_cache(*net, "default", d, few, split, 4, 0, false, DomainKind::Image,
                                   t.path(), 1, l0);
  TrunkCache b = build_trunk_cache(*net, "default", d, few, split, 4, 1, false, DomainKind::Image,
                                   t.path(), 1, l1);
  TrunkCache m =
      build_trunk_cache(*net, "default", d, few, split, 4, 1, false, DomainKind::Image, "", 1, lm);
  EXPECT_EQ(l0.image_forward, 12 * 4);
  EXPECT_EQ(l1.image_forward, 12 * 2);  // only its two seeded views
  EXPECT_EQ(lm.image_forward, 12 * 4);  // no folder: all computed
  EXPECT_TRUE(torch::equal(a.act.slice(0, 0, 2), b.act.slice(0, 0, 2)));
  EXPECT_FALSE(torch::allclose(a.act.slice(0, 2, 4), b.act.slice(0, 2, 4)));
  EXPECT_TRUE(torch::equal(b.act, m.act));  // what the files gave is what a pass computes
  ASSERT_EQ(a.groups.size(), 2u);
  EXPECT_TRUE(m.groups[0].pooled_file.empty());
  EXPECT_EQ(a.groups[0].pooled_file,
            b.groups[0].pooled_file);  // the seedless views: one file for all seeds
  EXPECT_NE(a.groups[1].pooled_file, b.groups[1].pooled_file);

  // Pooled through the top stages once, then read back; another seed pools only its own views.
  Ledger p1, p2, p3;
  auto f1 = frozen_pooled(a, *net, p1);
  auto f2 = frozen_pooled(a, *net, p2);
  EXPECT_GT(p1.flops, 0);
  EXPECT_EQ(p2.flops, 0);
  EXPECT_TRUE(torch::equal(f1, f2));
  ASSERT_EQ(f1.sizes(), (std::vector<int64_t>{4, 12, net->feature_dim}));
  auto by_hand = net->pool(net->run_stages(a.act[2].slice(0, 3, 4), split, net->num_stages()));
  EXPECT_TRUE(torch::allclose(f1[2][3], by_hand[0], 1e-5, 1e-6));
  auto f3 = frozen_pooled(b, *net, p3);
  EXPECT_DOUBLE_EQ(p3.flops * 2, p1.flops);  // 2 of its 4 views
  EXPECT_TRUE(torch::equal(f3.slice(0, 0, 2), f1.slice(0, 0, 2)));
  EXPECT_TRUE(torch::allclose(f3, frozen_pooled(m, *net, lm), 1e-5, 1e-6));  // as if computed here
  // A kept file of another shape is computed again, not used.
  torch::save(torch::zeros({1, 12, 5}), b.groups[1].pooled_file);
  Ledger p4;
  EXPECT_TRUE(torch::equal(frozen_pooled(b, *net, p4), f3));
  EXPECT_DOUBLE_EQ(p4.flops, p3.flops);
}

// A model's members see the image and its mirror alike, so encode_members runs those views' lower
// stages once for every member that loads member 0's (same split): each member's outputs are still
// exactly its own encode_logits', and the work saved is those stages, for those views, for it
// alone.
TEST(Phase1, MembersShareTheSeedlessViewsLowerStages) {
  const std::string shared = test::shared_or_empty();
  if (shared.empty()) GTEST_SKIP() << "no shared folder";
  const Dataset d = few_sketches(shared, 2);

  EncoderTrainOptions o;
  o.backbone.arch = "mobilenet_v1_025";
  o.views = o.tta_views = 3;  // two seedless views and one seeded
  o.frozen_epochs = o.finetune_epochs = 1;
  o.finetune_stages = 2;
  test::TempDir t;
  train_encoder(d, "sketch", o, t / "m0.pt");
  o.seed = 1;
  train_encoder(d, "sketch", o, t / "m1.pt");
  o.finetune_stages = 3;  // another split: its lower stages are not member 0's
  train_encoder(d, "sketch", o, t / "other.pt");

  std::vector<std::unique_ptr<PhaseOneEncoder>> enc;
  enc.push_back(open_encoder(t / "m0.pt", 1, "", true));
  enc.push_back(open_encoder(t / "m1.pt", 1));
  enc.push_back(open_encoder(t / "other.pt", 1));
  const int64_t n = 3, V = 3, C = 2, D = enc[0]->dim(), F = enc[0]->frozen_dim();
  const int S = enc[0]->input_size();
  const size_t per = 3 * static_cast<size_t>(S) * S;
  std::vector<cv::Mat> img;
  std::vector<uint64_t> hash(n);
  for (int64_t i = 0; i < n; ++i) img.push_back(load_rgb(d.abs_path(d.samples[i * 7]), &hash[i]));

  struct Out {
    std::vector<float> x, emb, logits, frozen;
  };
  auto fresh = [&](PhaseOneEncoder& e, bool first) {
    Out o;
    o.x.resize(n * V * per);
    for (int64_t i = 0; i < n; ++i)
      view_inputs(img[i], e.kind(), V, view_seed(e.view_seed(), hash[i]), S,
                  o.x.data() + i * V * per);
    o.emb.assign(first ? n * V * D : 0, 0.f);
    o.logits.assign(n * V * C, 0.f);
    o.frozen.assign(first ? n * V * F : 0, 0.f);
    return o;
  };
  auto rows_of = [](PhaseOneEncoder& e, Out& o) {
    return MemberRows{&e, o.x.data(), o.emb.empty() ? nullptr : o.emb.data(), o.logits.data(),
                      o.frozen.empty() ? nullptr : o.frozen.data()};
  };
  // Each member alone, as encode_logits gives it.
  std::vector<Out> alone;
  double alone_flops[3];
  for (size_t m = 0; m < 3; ++m) {
    alone.push_back(fresh(*enc[m], m == 0));
    MemberRows r = rows_of(*enc[m], alone[m]);
    FlopCount count;
    enc[m]->encode_logits(n * V, r.x, r.emb, r.logits, r.frozen);
    alone_flops[m] = count.flops;
  }
  // The seeded view differs between seeds, the seedless ones do not.
  EXPECT_EQ(0, std::memcmp(alone[0].x.data(), alone[1].x.data(), 2 * per * sizeof(float)));
  EXPECT_NE(0, std::memcmp(alone[0].x.data() + 2 * per, alone[1].x.data() + 2 * per,
                           per * sizeof(float)));

  // Together: the same outputs, bit for bit.
  std::vector<Out> together;
  std::vector<MemberRows> rows;
  for (size_t m = 0; m < 3; ++m) together.push_back(fresh(*enc[m], m == 0));
  for (size_t m = 0; m < 3; ++m) rows.push_back(rows_of(*enc[m], together[m]));
  FlopCount count;
  encode_members(n, rows);
  for (size_t m = 0; m < 3; ++m) {
    EXPECT_EQ(together[m].emb, alone[m].emb) << m;
    EXPECT_EQ(together[m].logits, alone[m].logits) << m;
    EXPECT_EQ(together[m].frozen, alone[m].frozen) << m;
  }
  // Member 1 ran only its seeded view through the lower stages; the other split ran all its own.
  auto net = open_backbone_net("mobilenet_v1_025", "");
  const double lower = stage_flops(*net, 0, net->num_stages() - 2);
  EXPECT_GT(lower, 0);
  EXPECT_NEAR(count.flops, alone_flops[0] + alone_flops[1] + alone_flops[2] - n * 2 * lower,
              1e-6 * count.flops);
}

// Distillation: a query encoder's classifier learns its teacher's classes. Told the wrong class
// for every image (as a source photo's posterior could), strongly enough, it learns that instead
// of the labels.
TEST(Phase1, DistillationTeachesTheTeachersClasses) {
  const std::string shared = test::shared_or_empty();
  if (shared.empty()) GTEST_SKIP() << "no shared folder";
  const Dataset d = few_sketches(shared, 2);

  EncoderTrainOptions o;
  o.backbone.arch = "mobilenet_v1_025";
  o.views = o.tta_views = 1;
  o.frozen_epochs = 15;
  o.finetune_epochs = 0;
  test::TempDir t;
  const EncoderTrainResult plain = train_encoder(d, "sketch", o, t / "plain.pt");
  EXPECT_GT(plain.train_acc, 0.8);

  // Each image's teacher: 0.99 on the class it is not.
  const std::string first = d.classes().front();
  Embeddings wrong;
  wrong.x = Matrix(static_cast<int64_t>(d.samples.size()), 2);
  for (size_t i = 0; i < d.samples.size(); ++i) {
    wrong.rows.push_back({d.samples[i].path, d.samples[i].cls, "sketch"});
    const int other = d.samples[i].cls == first ? 1 : 0;
    wrong.x.row(static_cast<int64_t>(i))[other] = 0.99f;
    wrong.x.row(static_cast<int64_t>(i))[1 - other] = 0.01f;
  }
  o.class_teacher = wrong;
  o.distill = 20;
  o.distill_t = 1;
  const EncoderTrainResult taught = train_encoder(d, "sketch", o, t / "taught.pt");
  EXPECT_LT(taught.train_acc, 0.2);  // the teacher's classes, not the labels

  // A teacher of another width, or with no row for any train image, is refused.
  expect_bad_teachers_refused(d, o, &EncoderTrainOptions::class_teacher, wrong, 5,
                              "class teacher has 5 outputs, not 2");
}
