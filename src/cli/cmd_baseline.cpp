// duet baseline hog|raw — retrieval without dual-phase training, for comparison.
#include <cstdio>

#include "cli/commands.h"
#include "duet/baseline.h"

namespace duet::cli {

void register_baseline(CLI::App& app) {
  auto* c = app.add_subcommand("baseline", "reference methods: HOG on edge maps, raw ImageNet features");
  c->require_subcommand(1);
  for (const std::string kind : {"hog", "raw"}) {
    auto o = std::make_shared<BaselineOptions>();
    auto json = std::make_shared<bool>(false);
    auto* s = c->add_subcommand(kind, kind == "hog" ? "HOG of sketches vs HOG of photo edge maps, cosine"
                                                    : "ImageNet backbone features of both domains, cosine");
    s->add_option("--split", o->split_file, "split TSV; test sketches query test photos")->required()
        ->check(CLI::ExistingFile);
    s->add_option("--data", o->data, "dataset root (default: the split file's parent folder)");
    if (kind == "raw") add_backbone_options(s, o->backbone);
    s->add_flag("--json", *json, "print metrics JSON");
    s->callback([o, json, kind] {
      auto r = kind == "hog" ? baseline_hog(*o) : baseline_raw(*o);
      if (*json) {
        std::string j = r.metrics.to_json();
        j.insert(j.size() - 1, ", \"wall_s\": " + std::to_string(r.wall_s));
        std::printf("%s\n", j.c_str());
      } else {
        std::printf("%s: map_all %.4f  map@200 %.4f  p@100 %.4f  (%lld queries, %.1f s)\n", kind.c_str(),
                    r.metrics.map_all, r.metrics.map_at[200], r.metrics.p_at[100],
                    static_cast<long long>(r.metrics.queries), r.wall_s);
      }
    });
  }
}

}  // namespace duet::cli
