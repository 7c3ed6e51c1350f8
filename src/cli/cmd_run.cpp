// duet run — the main job: the full dual-phase pipeline per split, resumable; and duet train, the
// same training on every image of a folder for a model to deploy.
#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "duet/dist.h"
#include "duet/error.h"
#include "duet/pipeline.h"

namespace duet::cli {

namespace {
// One row per split and query domain.
void print_table(const std::string& text) {
  auto j = nlohmann::json::parse(text);
  std::printf("%-11s %-9s %-8s %-8s %-8s %-8s %-8s %-8s %-8s %-9s %-9s %-9s\n", "split", "query",
              "map_all", "map@100", "map@200", "p@100", "p@200", "acc_q", "acc_g", "phase1_s",
              "phase2_s", "peak_MiB");
  for (const auto& [name, s] : j["splits"].items()) {
    double p1 = 0, peak = s["phase2"]["ledger"]["peak_rss_mib"].get<double>();
    for (const auto& [dom, p] : s["phase1"].items()) {
      p1 += p["ledger"]["wall_s"].get<double>();
      peak = std::max(peak, p["ledger"]["peak_rss_mib"].get<double>());
    }
    // Accuracy on held-out images of trained classes; a zero-shot split has none ("n/a").
    auto acc = [](const nlohmann::json& v) {
      char b[16];
      double a = v.get<double>();
      if (a < 0) return std::string("n/a");
      std::snprintf(b, sizeof b, "%.3f", a);
      return std::string(b);
    };
    const std::string gallery = s["domains"]["gallery"].get<std::string>();
    for (const auto& [qd, q] : s["by_query"].items()) {
      const auto& r = q["retrieval"];
      std::printf("%-11s %-9s %-8.4f %-8.4f %-8.4f %-8.4f %-8.4f %-8s %-8s %-9.1f %-9.1f %-9.0f\n",
                  name.c_str(), qd.c_str(), r["map_all"].get<double>(), r["map@100"].get<double>(),
                  r["map@200"].get<double>(), r["p@100"].get<double>(), r["p@200"].get<double>(),
                  acc(s["accuracy"][qd]).c_str(), acc(s["accuracy"][gallery]).c_str(), p1,
                  s["phase2"]["ledger"]["wall_s"].get<double>(), peak);
    }
  }
  if (j.contains("wall_s"))
    std::printf("all splits: %.0f s, peak %.0f MiB\n", j["wall_s"].get<double>(),
                j["peak_rss_mib"].get<double>());
}

// What `duet run` and `duet train` share: the recipe, the data's domains, the backbone, the seed.
void add_recipe_options(CLI::App* c, RunOptions& o, int& nproc) {
  c->add_option("--config", o.config, "recipe")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, Recipe>{{"default", Recipe::Default}, {"paper", Recipe::Paper}}))
      ->default_str("default");
  c->add_flag("--quick", o.quick,
              "smoke run: tiny backbone, short schedules (use with --max-classes)");
  c->add_option("--max-classes", o.max_classes, "keep only the first N classes (0 = all)")
      ->capture_default_str();
  c->add_option("--extra", o.extra,
                "extra training data, repeatable: an image folder <root>/<domain>/<class>/<image> "
                "merged by class name (its classes need not be in the gallery domain; a split's "
                "held-out classes are left out of it), e.g. $DUET_SHARED/data/tu-berlin")
      ->check(CLI::ExistingDirectory);
  add_domain_options(c, o.query_domains, o.gallery_domain, &o.kinds);
  c->add_option("--seed", o.seed, "random seed")->capture_default_str();
  c->add_option("--backbone", o.backbone.arch, "CNN architecture")
      ->check(CLI::IsMember(backbone_archs()))
      ->capture_default_str();
  c->add_option("--weights", o.backbone.weights,
                "backbone weights (default: $DUET_SHARED/weights)");
  c->add_option("-t,--threads", o.threads, "threads (0 = all cores)")->capture_default_str();
  c->add_option(
       "--preserve", o.preserve,
       "Phase I knowledge preservation: weight of a second head that keeps the frozen backbone's "
       "ImageNet outputs (0 = off; retrains Phase I)")
      ->capture_default_str()
      ->check(non_negative);
  c->add_option(
       "--preserve-source", o.preserve_source,
       "the same for query domains, each image keeping its source gallery image's ImageNet outputs "
       "(SAKE's sketch teacher; replaces --preserve there; 0 = off; retrains their Phase I)")
      ->capture_default_str()
      ->check(non_negative);
  c->add_option("--distill", o.distill,
                "query domains: weight of learning the gallery encoder's posteriors of each "
                "image's source image "
                "(temperature 4; default: 0.5, paper config 0; 0 = off; retrains their Phase I)")
      ->check(non_negative);
  add_dist_options(c, nproc);
}
}  // namespace

void register_run(CLI::App& app) {
  {
    auto o = std::make_shared<RunOptions>();
    auto model = std::make_shared<std::string>(), work = std::make_shared<std::string>();
    auto nproc = std::make_shared<int>(1);
    auto* c = app.add_subcommand("train",
                                 "the deployable model: both phases on every image of a folder (no "
                                 "test part), for index/search/serve");
    c->add_option("--data", o->data, "dataset: <root>/<domain>/<class>/<image>")
        ->required()
        ->check(CLI::ExistingDirectory);
    c->add_option("-o,--out", *model,
                  "model folder to write (replaced only once the new one is complete)")
        ->required();
    c->add_option("--work", *work,
                  "intermediate files, kept so that a rerun resumes (default: <out>.work)");
    add_recipe_options(c, *o, *nproc);
    c->add_flag("--json", o->json, "print the training report as JSON");
    c->callback([o, model, work, nproc] {
      workers_or_join(*nproc);
      RunOptions r = *o;
      while (model->size() > 1 && model->back() == '/') model->pop_back();
      r.out = work->empty() ? *model + ".work" : *work;
      const std::string text = train_model(r, *model);
      if (!dist::leader()) return;  // rank 0 reports
      if (r.json) {
        std::printf("%s\n", text.c_str());
        return;
      }
      const auto j = nlohmann::json::parse(text);
      std::printf("model %s (hash %s): %d classes, domains %s -> %s\n", model->c_str(),
                  j["hash"].get<std::string>().c_str(), j["training"]["classes"].get<int>(),
                  j["domains"]["query"].dump().c_str(),
                  j["domains"]["gallery"].get<std::string>().c_str());
    });
  }
  auto o = std::make_shared<RunOptions>();
  auto split = std::make_shared<std::string>("all");
  auto nproc = std::make_shared<int>(1);
  auto* c = app.add_subcommand(
      "run", "the full dual-phase pipeline (Phase I, Phase II, retrieval, metrics)");
  c->add_option("--data", o->data,
                "dataset root with splits/<name>.tsv (default: shared Sketchy subset)");
  c->add_option("--split", *split,
                "which split(s): category, zeroshot21, all, any <data>/splits/<name>.tsv, or a "
                "path to a split .tsv")
      ->capture_default_str();
  c->add_option("--out", o->out, "output folder (metrics.json, models, embeddings)")
      ->capture_default_str();
  add_recipe_options(c, *o, *nproc);
  c->add_flag("--json", o->json, "print metrics JSON on stdout instead of a table");
  auto* g = c->add_option_group(
      "retrieval",
      "default config: the fused pair score and diffusion re-ranking over the gallery photo graph");
  g->add_option("--photo-power", o->rank.fusion.photo_power,
                "photo posteriors enter the fusion as p^t / sum(p^t)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  g->add_option(
       "--unseen-gate", o->rank.fusion.unseen_gate,
       "a query whose best p_s.p_p over the gallery is below this is scored as an unseen class "
       "(0 = never)")
      ->capture_default_str()
      ->check(non_negative);
  g->add_option("--unseen-post", o->rank.fusion.unseen_post,
                "unseen queries: weight of log p_s.p_p")
      ->capture_default_str()
      ->check(non_negative);
  g->add_option("--unseen-profile", o->rank.fusion.unseen_profile,
                "unseen queries: weight of the posterior-profile cosine")
      ->capture_default_str()
      ->check(non_negative);
  g->add_option("--bridge", o->rank.fusion.bridge,
                "seen-class queries: weight of the bridge cosine (the query mapped into the "
                "gallery's frozen "
                "ImageNet features)")
      ->capture_default_str()
      ->check(non_negative);
  g->add_option("--unseen-bridge", o->rank.fusion.unseen_bridge,
                "unseen queries: weight of the bridge cosine")
      ->capture_default_str()
      ->check(non_negative);
  g->add_option("--bridge-ridge", o->bridge_opt.ridge,
                "the bridge's ridge regularisation (refits the bridge)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  g->add_option("--bridge-source", o->bridge_opt.source_weight,
                "the bridge's target: this much of the source photo, the rest its class mean "
                "(refits the bridge)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  g->add_option("--graph", o->rank.graph,
                "the diffusion graph's space: embedding (Phase I), bridge, or both")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, GraphSpace>{{"embedding", GraphSpace::Embedding},
                                            {"bridge", GraphSpace::Bridge},
                                            {"both", GraphSpace::Both}}))
      ->default_str("embedding");
  g->add_flag("!--no-diffusion", o->rank.diffusion, "rank by the fused score alone");
  g->add_option("--diffusion-k", o->rank.diff.k, "graph neighbours per photo")
      ->capture_default_str()
      ->check(positive);
  g->add_option("--diffusion-alpha", o->rank.diff.alpha, "propagation strength in [0, 1)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.999999));
  g->add_option("--diffusion-seeds", o->rank.diff.seeds, "top matches per query that start it")
      ->capture_default_str()
      ->check(positive);
  g->add_option("--diffusion-blend", o->rank.diff.blend, "weight of the fused score added back")
      ->capture_default_str()
      ->check(non_negative);
  g->add_option("--diffusion-shortlist", o->rank.diff.shortlist,
                "best items per query it runs over (0: the whole gallery)")
      ->capture_default_str()
      ->check(non_negative);
  c->callback([o, split, g, nproc] {
    for (const auto* opt : g->get_options())
      if (opt->count() > 0 && o->config != Recipe::Default)
        fail(opt->get_name(),
             ": the fused score and diffusion belong to the default config (got --config ",
             recipe_name(o->config), ")");
    workers_or_join(*nproc);
    if (*split == "all")
      o->splits = {"category", "zeroshot21"};
    else
      o->splits = {*split};
    std::string text = run_pipeline(*o);
    if (!dist::leader()) return;  // rank 0 reports
    if (o->json)
      std::printf("%s\n", text.c_str());
    else
      print_table(text);
  });
}

}  // namespace duet::cli
