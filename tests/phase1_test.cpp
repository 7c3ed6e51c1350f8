// Phase I's knowledge-preservation teacher (duet/phase1.h), through train_encoder on a few real
// sketches with the tiny backbone: a given teacher trains exactly as the encoder's own views do
// when it holds the same distributions, and otherwise it trains another encoder.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

#include "duet/dataset.h"
#include "duet/embeddings.h"
#include "duet/phase1.h"
#include "test_util.h"

using namespace duet;

namespace {
float max_abs_diff(const Matrix& a, const Matrix& b) {
  float m = 0;
  for (size_t i = 0; i < a.data.size(); ++i) m = std::max(m, std::abs(a.data[i] - b.data[i]));
  return m;
}
}  // namespace

TEST(Phase1, GivenTeacherTrainsAsTheViewsOwnWhenTheyAgree) {
  const std::string shared = test::shared_or_empty();
  if (shared.empty()) GTEST_SKIP() << "no shared folder";
  Dataset full = load_split(shared + "/data/sketchy-subset/splits/category.tsv");
  const auto cls = full.classes();
  const std::set<std::string> keep(cls.begin(), cls.begin() + 3);
  Dataset d = full;
  d.samples.clear();
  for (const auto& s : full.samples)
    if (s.domain == "sketch" && keep.count(s.cls)) d.samples.push_back(s);
  ASSERT_GT(d.samples.size(), 60u);

  EncoderTrainOptions o;
  o.backbone.arch = "mobilenet_v1_025";
  o.views = o.tta_views = 1;  // one view: the encoder's own teacher is frozen_features' distribution
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
  for (size_t i = 0; i < rolled.rows.size(); ++i) rolled.rows[i].path = teacher.rows[(i + 1) % teacher.rows.size()].path;
  o.teacher = rolled;
  train_encoder(d, "sketch", o, t / "rolled.pt", t / "rolled.npy");
  EXPECT_GT(max_abs_diff(own, read_embeddings(t / "rolled.npy").x), 1e-3);

  // A teacher of the wrong width, or with no row for any train image, is refused.
  Embeddings narrow = teacher;
  narrow.x = Matrix(teacher.x.rows, 10);
  o.teacher = narrow;
  EXPECT_NE(test::error_of([&] { train_encoder(d, "sketch", o, t / "x.pt"); }).find("has 10 outputs"), std::string::npos);
  Embeddings strangers = teacher;
  for (auto& r : strangers.rows) r.path = "elsewhere/" + r.path;
  o.teacher = strangers;
  EXPECT_NE(test::error_of([&] { train_encoder(d, "sketch", o, t / "x.pt"); }).find("none of its train images"),
            std::string::npos);
}
