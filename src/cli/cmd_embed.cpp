// duet embed — images -> embedding file (.npy + .tsv manifest).
#include <cstdio>

#include "cli/commands.h"
#include "duet/embed.h"
#include "duet/error.h"
#include "duet/inference.h"
#include "duet/paths.h"
#include "duet/progress.h"

namespace duet::cli {

namespace {
struct EmbedArgs {
  BackboneOptions backbone;
  std::string split_file, data, domain, subset = "all", out, encoder;
  EmbedOptions embed;
};

void run_embed(const EmbedArgs& a) {
  LoadOptions lo;
  lo.skip_bad = a.embed.skip_bad;
  Dataset d;
  if (!a.split_file.empty())
    d = load_split(a.split_file, a.data, lo);
  else
    d = load_folder(a.data.empty() ? default_data_dir() : a.data, lo);
  auto samples = d.select(a.domain, a.subset == "all" ? "" : a.subset);
  if (samples.empty()) {
    std::string have;
    for (const auto& dom : d.domains()) have += (have.empty() ? "" : ", ") + dom;
    fail("no ", a.domain, " images", a.subset == "all" ? "" : " in the " + a.subset + " split",
         " (domains here: ", have, ")");
  }
  std::unique_ptr<Encoder> enc;
  if (a.encoder.empty())
    enc = open_backbone(a.backbone);
  else
    enc = open_encoder(a.encoder, a.backbone.threads);
  Embeddings e = embed_samples(*enc, d, samples, a.embed, "embed " + a.domain);
  e.meta["domain"] = a.domain;
  write_embeddings(a.out, e);
  std::printf("%s: %lld x %lld (%s)\n", a.out.c_str(), static_cast<long long>(e.x.rows),
              static_cast<long long>(e.x.cols), e.meta["source"].c_str());
}
}  // namespace

void register_embed(CLI::App& app) {
  auto a = std::make_shared<EmbedArgs>();
  auto* c = app.add_subcommand("embed", "encode the images of one domain into an embedding file");
  add_backbone_options(c, a->backbone);
  c->add_option("--encoder", a->encoder, "a Phase I encoder file (embeddings of its hidden layer)")
      ->check(CLI::ExistingFile);
  c->add_option("--split", a->split_file, "split TSV (domain, path, class, split)")
      ->check(CLI::ExistingFile);
  c->add_option("--data", a->data,
                "dataset root (default: the split's parent folder, or the shared Sketchy subset)");
  c->add_option("--domain", a->domain, "which domain to encode (sketch, photo, ...)")->required();
  c->add_option("--subset", a->subset, "which part of the split")
      ->check(CLI::IsMember({"train", "test", "all"}))
      ->capture_default_str();
  c->add_option("-o,--out", a->out, "output .npy (the manifest goes to the same name with .tsv)")
      ->required();
  c->add_option("-b,--batch", a->embed.batch, "images per forward pass")
      ->check(positive)
      ->capture_default_str();
  c->add_option(
       "--views", a->embed.views,
       "test-time views averaged: 1 = the image, 2 = + mirror, more = + seeded augmentations; "
       "default: as the --encoder's training run wrote its embeddings (1 without --encoder)")
      ->check(CLI::Range(1, 16));
  c->add_flag("--skip-bad", a->embed.skip_bad,
              "warn about and skip unreadable images instead of failing");
  c->callback([a] { run_embed(*a); });
}

}  // namespace duet::cli
