// Phase I ensemble members: trained on one view seed they share one trunk cache, and
// encode_members runs their frozen stages once and gives each member exactly what it gives alone.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "duet/augment.h"
#include "duet/dataset.h"
#include "duet/error.h"
#include "duet/image.h"
#include "duet/phase1.h"
#include "test_util.h"

using namespace duet;

TEST(Phase1, MembersShareTheFrozenStagesAndViews) {
  const std::string shared = test::shared_or_empty();
  const std::string data = shared + "/data/sketchy-subset";
  const std::string weights = shared + "/weights/mobilenet_v1_0.25_128_quant.tflite";
  if (shared.empty() || !std::filesystem::exists(data) || !std::filesystem::exists(weights))
    GTEST_SKIP() << "no shared data or weights (set DUET_SHARED)";
  test::TempDir tmp;
  // Three classes of sketches, 8 each (6 train, 2 test).
  const std::string tsv = tmp / "few.tsv";
  {
    std::ifstream in(data + "/splits/category.tsv");
    std::ofstream out(tsv);
    std::map<std::string, int> per;
    for (std::string line; std::getline(in, line);) {
      std::istringstream f(line);
      std::string domain, path, cls;
      f >> domain >> path >> cls;
      if (domain == "domain") out << line << "\n";
      if (domain != "sketch" || (cls != "airplane" && cls != "apple" && cls != "bear")) continue;
      int k = per[cls]++;
      if (k < 8) out << domain << "\t" << path << "\t" << cls << "\t" << (k < 6 ? "train" : "test") << "\n";
    }
  }
  Dataset d = load_split(tsv, data);
  EncoderTrainOptions opt;
  opt.backbone.arch = "mobilenet_v1_025";
  opt.backbone.weights = weights;
  opt.backbone.threads = 1;
  opt.hidden = 32;
  opt.views = opt.tta_views = 2;
  opt.frozen_epochs = 2;
  opt.finetune_epochs = 1;
  opt.kind = DomainKind::Drawing;
  opt.cache_dir = tmp / "cache";
  auto train = [&](uint64_t seed, std::optional<uint64_t> view_seed, const std::string& name) {
    EncoderTrainOptions o = opt;
    o.seed = seed;
    o.view_seed = view_seed;
    train_encoder(d, "sketch", o, tmp / name);
    return open_encoder(tmp / name, 1);
  };
  auto a = train(1, 5, "a.pt"), b = train(2, 5, "b.pt");
  // One trunk cache for both members: the second found the first's.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(opt.cache_dir), std::filesystem::directory_iterator()), 1);
  auto c = train(3, std::nullopt, "c.pt");  // its views come from its own seed
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(opt.cache_dir), std::filesystem::directory_iterator()), 2);
  EXPECT_EQ(a->view_seed(), 5u);
  EXPECT_EQ(b->view_seed(), 5u);
  EXPECT_EQ(c->view_seed(), 3u);
  EXPECT_TRUE(a->shares_views(*b));
  EXPECT_FALSE(a->shares_views(*c));

  // Views of four real sketches, as a model draws them.
  const int S = a->input_size(), V = a->tta_views(), n = 4;
  const size_t per = 3 * static_cast<size_t>(S) * S;
  std::vector<float> x(n * V * per);
  for (int i = 0; i < n; ++i) {
    uint64_t hash = 0;
    cv::Mat img = load_rgb(d.abs_path(d.samples[i]), &hash);
    view_inputs(img, DomainKind::Drawing, V, view_seed(a->view_seed(), hash), S, x.data() + i * V * per);
  }
  const int64_t rows = n * V, D = a->dim(), C = static_cast<int64_t>(a->classes().size());
  std::vector<float> ea(rows * D), la(rows * C), eb(rows * D), lb(rows * C), le(rows * D), lt(rows * C),
      me(rows * D), ml(rows * C);
  a->encode_logits(rows, x.data(), ea.data(), la.data());
  b->encode_logits(rows, x.data(), eb.data(), lb.data());
  // Together: member a's embedding and logits, member b's logits only.
  encode_members({a.get(), b.get()}, rows, x.data(), {me.data(), nullptr}, {ml.data(), lt.data()});
  EXPECT_EQ(me, ea);
  EXPECT_EQ(ml, la);
  EXPECT_EQ(lt, lb);
  EXPECT_NE(la, lb);  // two trainings: the second member ran its own trained stages and head
  encode_members({b.get()}, rows, x.data(), {le.data()}, {nullptr});
  EXPECT_EQ(le, eb);
  EXPECT_NE(test::error_of([&] {
              encode_members({a.get(), c.get()}, rows, x.data(), {nullptr, nullptr}, {la.data(), lb.data()});
            }).find("same frozen stages and views"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { encode_members({a.get(), b.get()}, rows, x.data(), {nullptr}, {la.data()}); })
                .find("one embedding and one logits output per member"),
            std::string::npos);
}
