// duet report — the HTML page of a run: metrics, curves, examples, t-SNE maps (duet/report.h).
#include <cstdio>

#include "cli/commands.h"
#include "duet/report.h"

namespace duet::cli {

void register_report(CLI::App& app) {
  auto o = std::make_shared<ReportOptions>();
  auto* c = app.add_subcommand(
      "report", "one self-contained HTML page of a run (duet run writes <out>/report.html)");
  c->add_option("--run", o->run, "a `duet run` output folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  c->add_option("-o,--out", o->out, "page to write (default: <run>/report.html)");
  c->add_option("--tradeoff", o->tradeoff,
                "bench/tradeoff.sh JSON to chart (default: <run>/tradeoff.json if present)");
  c->add_option("--tsne-points", o->tsne_points, "points per t-SNE map at most")
      ->capture_default_str()
      ->check(positive);
  c->add_option("--seed", o->seed, "seed of the t-SNE maps")->capture_default_str();
  c->callback([o] { std::printf("%s\n", write_report(*o).c_str()); });
}

}  // namespace duet::cli
