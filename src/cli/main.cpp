// duet — cross-domain retrieval (sketch -> photo and other domain pairs).
//
// Exit codes: 0 success, 1 bad input or failed work (one "duet: error: ..." line), 2 bad usage
// (unknown verb or flag), 3 internal error.
#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "duet/dist.h"
#include "duet/error.h"
#include "duet/progress.h"
#include "duet/runtime.h"

namespace duet::cli {

namespace {
CLI::Validator number_check(bool zero_ok) {
  return CLI::Validator(
      [zero_ok](std::string& s) -> std::string {
        size_t used = 0;
        double v = 0;
        try {
          v = std::stod(s, &used);
        } catch (const std::exception&) {
        }
        if (used == 0 || used != s.size()) return "'" + s + "' is not a number";
        if (v > 0 || (zero_ok && v == 0)) return "";
        return std::string(zero_ok ? "must not be negative" : "must be positive") + " (got " + s +
               ")";
      },
      zero_ok ? "NONNEGATIVE" : "POSITIVE");
}
}  // namespace

const CLI::Validator positive = number_check(false), non_negative = number_check(true);

void add_backbone_options(CLI::App* cmd, BackboneOptions& opt) {
  cmd->add_option("--backbone", opt.arch, "CNN architecture")
      ->check(CLI::IsMember(backbone_archs()))
      ->capture_default_str();
  cmd->add_option(
      "--weights", opt.weights,
      "weights: .tflite (MobileNets) or TorchScript (.pt); default: $DUET_SHARED/weights");
  cmd->add_option("-t,--threads", opt.threads, "intra-op threads (0 = all cores)")
      ->capture_default_str();
}

void add_domain_options(CLI::App* cmd, std::vector<std::string>& query, std::string& gallery,
                        std::map<std::string, DomainKind>* kinds) {
  cmd->add_option(
      "--query-domain", query,
      std::string("domain whose images are the queries; repeat for several (default: ") +
          kDefaultQueryDomain + ")");
  cmd->add_option(
      "--gallery-domain", gallery,
      std::string("domain whose images are searched (default: ") + kDefaultGalleryDomain + ")");
  if (kinds)
    cmd->add_option_function<std::string>(
        "--domain-kind", [kinds](const std::string& v) { *kinds = parse_kind_overrides(v); },
        "override the detected kind of domains: DOMAIN=drawing|image,... (drawing: dark strokes on "
        "white)");
}

namespace {
char** g_argv = nullptr;
}  // namespace

void set_command_line(char** argv) { g_argv = argv; }

void add_dist_options(CLI::App* cmd, int& nproc) {
  cmd->add_option(
         "--nproc", nproc,
         "data-parallel workers on this machine (c10d/Gloo over loopback; they split the cores). "
         "Or start one process per rank with torchrun's RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
}

void workers_or_join(int nproc) {
  const dist::Options env = dist::from_env();
  // The workers --nproc starts run this same command line; spawn_local marks them.
  const bool spawned = std::getenv("DUET_SPAWNED") != nullptr;
  if (nproc > 1 && !spawned) {
    if (env.world > 1)
      fail("--nproc ", nproc, " inside a worker of ", env.world, " ranks: give one or the other");
    std::exit(dist::spawn_local(nproc, g_argv));
  }
  dist::init(env);
}

}  // namespace duet::cli

int main(int argc, char** argv) {
  duet::init_runtime();
  duet::cli::set_command_line(argv);
  CLI::App app{
      "duet: sketch-based and cross-domain image retrieval (dual-phase).\n"
      "Run 'duet <verb> --help' for the options of each verb."};
  app.set_version_flag("--version", std::string("duet ") + DUET_VERSION);
  app.require_subcommand(1);
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "no progress or log lines on stderr");
  app.parse_complete_callback([&] {
    if (quiet) duet::set_quiet(true);
  });
  duet::cli::register_eval(app);
  duet::cli::register_split(app);
  duet::cli::register_embed(app);
  duet::cli::register_classify(app);
  duet::cli::register_train(app);
  duet::cli::register_map(app);
  duet::cli::register_run(app);
  duet::cli::register_baseline(app);
  duet::cli::register_model(app);
  duet::cli::register_index(app);
  duet::cli::register_shard(app);
  duet::cli::register_search(app);
  duet::cli::register_serve(app);
  duet::cli::register_tsne(app);
  duet::cli::register_report(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const duet::Error& e) {
    std::fprintf(stderr, "duet: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "duet: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
