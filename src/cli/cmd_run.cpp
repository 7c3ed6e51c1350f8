// duet run — the main job: the full dual-phase pipeline, resumable.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "duet/error.h"
#include "duet/pipeline.h"

namespace duet::cli {

namespace {
void print_table(const std::string& text) {
  auto j = nlohmann::json::parse(text);
  std::printf("%-11s %-8s %-8s %-8s %-8s %-8s %-8s %-8s %-9s %-9s %-9s\n", "split", "map_all", "map@100", "map@200",
              "p@100", "p@200", "acc_sk", "acc_ph", "phase1_s", "phase2_s", "peak_MiB");
  for (const auto& [name, s] : j["splits"].items()) {
    const auto& r = s["retrieval"];
    double p1 = s["phase1_sketch"]["ledger"]["wall_s"].get<double>() + s["phase1_photo"]["ledger"]["wall_s"].get<double>();
    double peak = std::max({s["phase1_sketch"]["ledger"]["peak_rss_mib"].get<double>(),
                            s["phase1_photo"]["ledger"]["peak_rss_mib"].get<double>(),
                            s["phase2"]["ledger"]["peak_rss_mib"].get<double>()});
    // Accuracy on held-out images of trained classes; a zero-shot split has none ("n/a").
    auto acc = [](const nlohmann::json& v) {
      char b[16];
      double a = v.get<double>();
      if (a < 0) return std::string("n/a");
      std::snprintf(b, sizeof b, "%.3f", a);
      return std::string(b);
    };
    std::printf("%-11s %-8.4f %-8.4f %-8.4f %-8.4f %-8.4f %-8s %-8s %-9.1f %-9.1f %-9.0f\n", name.c_str(),
                r["map_all"].get<double>(), r["map@100"].get<double>(), r["map@200"].get<double>(),
                r["p@100"].get<double>(), r["p@200"].get<double>(), acc(s["sketch_accuracy"]).c_str(),
                acc(s["photo_accuracy"]).c_str(), p1, s["phase2"]["ledger"]["wall_s"].get<double>(), peak);
  }
}
}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto split = std::make_shared<std::string>("all");
  auto* c = app.add_subcommand("run", "the full dual-phase pipeline (Phase I, Phase II, retrieval, metrics)");
  c->add_option("--data", o->data, "dataset root with splits/<name>.tsv (default: shared Sketchy subset)");
  c->add_option("--split", *split, "which split(s): category, zeroshot21, all, any <data>/splits/<name>.tsv, or a path to a split .tsv")
      ->capture_default_str();
  c->add_option("--out", o->out, "output folder (metrics.json, models, embeddings)")->capture_default_str();
  c->add_option("--config", o->config, "recipe")->check(CLI::IsMember({"default", "paper"}))->capture_default_str();
  c->add_flag("--quick", o->quick, "smoke run: tiny backbone, short schedules (use with --max-classes)");
  c->add_option("--max-classes", o->max_classes, "keep only the first N classes (0 = all)")->capture_default_str();
  c->add_option("--seed", o->seed, "random seed")->capture_default_str();
  c->add_option("--backbone", o->backbone.arch, "CNN architecture")->check(CLI::IsMember(backbone_archs()))
      ->capture_default_str();
  c->add_option("--weights", o->backbone.weights, "backbone weights (default: $DUET_SHARED/weights)");
  c->add_option("-t,--threads", o->threads, "threads (0 = all cores)")->capture_default_str();
  c->add_flag("--json", o->json, "print metrics JSON on stdout instead of a table");
  auto* g = c->add_option_group(
      "retrieval", "default config: the fused pair score and diffusion re-ranking over the gallery photo graph");
  g->add_option("--photo-power", o->fusion_opt.photo_power,
                "photo posteriors enter the fusion as p^t / sum(p^t)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  g->add_option("--unseen-gate", o->fusion_opt.unseen_gate,
                "a query whose best p_s.p_p over the gallery is below this is scored as an unseen class "
                "(0 = never)")
      ->capture_default_str()->check(non_negative);
  g->add_option("--unseen-post", o->fusion_opt.unseen_post, "unseen queries: weight of log p_s.p_p")
      ->capture_default_str()->check(non_negative);
  g->add_option("--unseen-profile", o->fusion_opt.unseen_profile,
                "unseen queries: weight of the posterior-profile cosine")
      ->capture_default_str()->check(non_negative);
  g->add_flag("!--no-diffusion", o->diffusion, "rank by the fused score alone");
  g->add_option("--diffusion-k", o->diffusion_opt.k, "graph neighbours per photo")->capture_default_str()->check(positive);
  g->add_option("--diffusion-alpha", o->diffusion_opt.alpha, "propagation strength in [0, 1)")
      ->capture_default_str()->check(CLI::Range(0.0, 0.999999));
  g->add_option("--diffusion-seeds", o->diffusion_opt.seeds, "top matches per query that start it")
      ->capture_default_str()->check(positive);
  g->add_option("--diffusion-blend", o->diffusion_opt.blend, "weight of the fused score added back")
      ->capture_default_str()->check(non_negative);
  c->callback([o, split, g] {
    for (const auto* opt : g->get_options())
      if (opt->count() > 0 && o->config != "default")
        fail(opt->get_name(), ": the fused score and diffusion belong to the default config (got --config ",
             o->config, ")");
    if (*split == "all") o->splits = {"category", "zeroshot21"};
    else o->splits = {*split};
    std::string text = run_pipeline(*o);
    if (o->json) std::printf("%s\n", text.c_str());
    else print_table(text);
  });
}

}  // namespace duet::cli
