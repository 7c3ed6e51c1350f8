// duet baseline hog|raw|siamese — retrieval without dual-phase training, for comparison.
#include <cstdio>

#include "cli/commands.h"
#include "duet/baseline.h"
#include "duet/fileio.h"

namespace duet::cli {

namespace {
// hog and raw give one result, siamese one per budget (a JSON array).
void report(const std::string& kind, const std::vector<BaselineResult>& rs, bool array, bool json,
            const std::string& json_out) {
  std::string j = array ? "[" : "";
  for (size_t i = 0; i < rs.size(); ++i) j += (i ? ", " : "") + rs[i].to_json();
  if (array) j += "]";
  if (!json_out.empty()) write_file_atomic(json_out, j + "\n");
  if (json) {
    std::printf("%s\n", j.c_str());
    return;
  }
  for (const auto& r : rs) {
    std::printf("%s: map_all %.4f  map@200 %.4f  p@100 %.4f  (%lld queries, %.1f s", kind.c_str(),
                r.metrics.map_all, r.metrics.map_at.at(200), r.metrics.p_at.at(100),
                static_cast<long long>(r.metrics.queries), r.wall_s);
    if (r.steps)
      std::printf("; trained %.1f s, %.2f TFLOPs, %.2f epochs", r.train.wall_s,
                  r.train.flops / 1e12, r.epochs);
    std::printf(")\n");
  }
}

struct Args {
  SiameseOptions opt;  // opt.base is all hog and raw use
  bool json = false;
  std::string json_out;
};
}  // namespace

void register_baseline(CLI::App& app) {
  auto* c = app.add_subcommand(
      "baseline", "reference methods: HOG on edge maps, raw ImageNet features, end-to-end siamese");
  c->require_subcommand(1);
  const std::vector<std::pair<std::string, std::string>> kinds = {
      {"hog", "HOG of sketches vs HOG of photo edge maps, cosine"},
      {"raw", "ImageNet backbone features of both domains, cosine"},
      {"siamese",
       "both backbones trained jointly on sketch/photo triplets (end to end) within a FLOP "
       "budget"}};
  for (const auto& [kind, help] : kinds) {
    auto a = std::make_shared<Args>();
    auto* s = c->add_subcommand(kind, help);
    BaselineOptions& b = a->opt.base;
    s->add_option("--split", b.split_file,
                  "split TSV; trains on its train part, test sketches query test photos")
        ->required()
        ->check(CLI::ExistingFile);
    s->add_option("--data", b.data, "dataset root (default: the split file's parent folder)");
    s->add_option("--query-domain", b.query_domain,
                  std::string("query domain (default: ") + kDefaultQueryDomain + ")");
    s->add_option("--gallery-domain", b.gallery_domain,
                  std::string("gallery domain (default: ") + kDefaultGalleryDomain + ")");
    if (kind != "hog") add_backbone_options(s, b.backbone);
    if (kind == "siamese") {
      SiameseOptions& o = a->opt;
      s->add_option("--budget-tflops", o.budgets_tflops,
                    "evaluate once training has spent each of these TFLOPs, stop at the largest "
                    "(default: all epochs)")
          ->delimiter(',')
          ->check(positive);
      s->add_option("--epochs", o.epochs, "at most this many passes over the train sketches")
          ->capture_default_str()
          ->check(positive);
      s->add_option("--batch", o.batch,
                    "sketch/photo pairs per step (negatives come from the batch)")
          ->capture_default_str()
          ->check(CLI::Range(2, 1024));
      s->add_option("--train-from", o.train_from,
                    "backbone stages below this stay frozen (0: full networks)")
          ->capture_default_str()
          ->check(non_negative);
      s->add_option("--lr", o.lr, "backbone learning rate (heads: 10x)")
          ->capture_default_str()
          ->check(positive);
      s->add_option("--margin", o.margin, "triplet margin on L2-normalised codes")
          ->capture_default_str()
          ->check(positive);
      s->add_option("--code-dim", o.code_dim, "code width")->capture_default_str()->check(positive);
      s->add_option("--seed", o.seed, "seed for sampling, augmentation and initialisation")
          ->capture_default_str();
    }
    s->add_flag("--json", a->json,
                kind == "siamese" ? "print the results as a JSON array, one per budget"
                                  : "print the result as JSON");
    s->add_option("--json-out", a->json_out, "also write the JSON result here");
    s->callback([a, kind] {
      if (kind == "siamese")
        report(kind, baseline_siamese(a->opt), true, a->json, a->json_out);
      else
        report(kind, {kind == "hog" ? baseline_hog(a->opt.base) : baseline_raw(a->opt.base)}, false,
               a->json, a->json_out);
    });
  }
}

}  // namespace duet::cli
