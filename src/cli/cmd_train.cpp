// duet train-encoder / duet train-mapper — the two phases, one at a time.
#include <cstdio>
#include <map>
#include <set>

#include "cli/commands.h"
#include "duet/dataset.h"
#include "duet/dist.h"
#include "duet/domain.h"
#include "duet/embeddings.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/inference.h"
#include "duet/paths.h"
#include "duet/phase1.h"
#include "duet/phase2.h"

namespace duet::cli {

namespace {
struct EncoderArgs {
  EncoderTrainOptions opt;
  std::string split_file, data, domain, kind, out, emb_out, json_out;
  int nproc = 1;
};

void run_train_encoder(const EncoderArgs& a) {
  workers_or_join(a.nproc);
  Dataset d = load_split(a.split_file, a.data);
  EncoderTrainOptions opt = a.opt;
  if (!a.kind.empty()) opt.kind = parse_kind(a.kind);
  auto r = train_encoder(d, a.domain, opt, a.out, a.emb_out);
  if (!dist::leader()) return;
  std::string j = r.to_json();
  if (!a.json_out.empty()) write_file_atomic(a.json_out, j + "\n");
  std::printf("%s\n", j.c_str());
}

struct MapperArgs {
  MapperOptions opt;
  std::vector<std::string> query_emb;
  std::string gallery_emb, split_file, out, json_out;
  int nproc = 1;
};

// Keeps the rows whose path is in the split's train part (all rows without a split file).
Embeddings train_rows(const Embeddings& e, const std::string& split_file) {
  if (split_file.empty()) return e;
  Dataset d = load_split(split_file);
  std::set<std::string> train;
  for (const auto& s : d.samples)
    if (s.split == "train") train.insert(s.path);
  std::vector<size_t> rows;
  for (size_t i = 0; i < e.rows.size(); ++i)
    if (train.count(e.rows[i].path)) rows.push_back(i);
  Embeddings out = take_rows(e, rows);
  if (out.x.rows == 0)
    fail(split_file,
         " marks none of the embedded images as train; is it the split they came from?");
  return out;
}

void run_train_mapper(const MapperArgs& a) {
  workers_or_join(a.nproc);
  std::vector<Embeddings> q;
  for (const auto& f : a.query_emb) q.push_back(train_rows(read_embeddings(f), a.split_file));
  auto r = train_mapper(q, train_rows(read_embeddings(a.gallery_emb), a.split_file), a.opt, a.out);
  if (!dist::leader()) return;
  std::string j = r.to_json();
  if (!a.json_out.empty()) write_file_atomic(a.json_out, j + "\n");
  std::printf("%s\n", j.c_str());
}
}  // namespace

void register_train(CLI::App& app) {
  {
    auto a = std::make_shared<EncoderArgs>();
    auto* c = app.add_subcommand("train-encoder",
                                 "Phase I: train one domain's encoder (no cross-domain pairs)");
    add_backbone_options(c, a->opt.backbone);
    c->add_option("--split", a->split_file, "split TSV (domain, path, class, split)")
        ->required()
        ->check(CLI::ExistingFile);
    c->add_option("--data", a->data, "dataset root (default: the split file's parent folder)");
    c->add_option("--domain", a->domain,
                  "domain to train (a folder of the dataset: sketch, photo, art, ...)")
        ->required();
    c->add_option("--kind", a->kind,
                  "domain kind: drawing or image (default: detected from its images)")
        ->check(CLI::IsMember({"drawing", "image"}));
    c->add_option("-o,--out", a->out, "encoder file to write")->required();
    c->add_option("--emb-out", a->emb_out,
                  "also write embeddings of every image of the domain (.npy)");
    c->add_option("--json-out", a->json_out,
                  "also write the training report (accuracies, ledger) here");
    c->add_option("--hidden", a->opt.hidden, "embedding width")
        ->capture_default_str()
        ->check(positive);
    c->add_option("--frozen-epochs", a->opt.frozen_epochs, "epochs with the backbone frozen")
        ->capture_default_str();
    c->add_option("--finetune-epochs", a->opt.finetune_epochs,
                  "epochs with the top stages unfrozen")
        ->capture_default_str();
    c->add_option("--finetune-stages", a->opt.finetune_stages, "backbone stages to unfreeze")
        ->capture_default_str();
    c->add_option("--views", a->opt.views,
                  "cached views per image (original, mirror, augmentations)")
        ->capture_default_str()
        ->check(CLI::Range(1, 16));
    c->add_option("--batch", a->opt.batch, "minibatch size")
        ->capture_default_str()
        ->check(positive);
    c->add_option("--lr", a->opt.lr, "head learning rate (frozen stage)")->capture_default_str();
    c->add_option("--finetune-lr", a->opt.finetune_lr, "backbone learning rate (fine-tuning)")
        ->capture_default_str();
    c->add_option("--label-smoothing", a->opt.label_smoothing, "cross-entropy label smoothing")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 0.5));
    c->add_option("--dropout", a->opt.dropout, "dropout before the classifier")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 0.95));
    c->add_option(
         "--tta-views", a->opt.tta_views,
         "views averaged in the written embeddings: 1 = image, 2 = + mirror, up to --views")
        ->capture_default_str()
        ->check(CLI::Range(1, 16));
    c->add_flag("--frame", a->opt.frame,
                "crop each image to its dark strokes, centred with a margin (line drawings such as "
                "sketches)");
    c->add_option("--cache-dir", a->opt.cache_dir, "keep trunk activations here between runs");
    c->add_option("--seed", a->opt.seed, "random seed")->capture_default_str();
    add_dist_options(c, a->nproc);
    c->callback([a] { run_train_encoder(*a); });
  }
  {
    auto a = std::make_shared<MapperArgs>();
    auto* c = app.add_subcommand("train-mapper",
                                 "Phase II: train the mapper on query/gallery embedding pairs");
    c->add_option("--query-emb", a->query_emb,
                  "a query domain's embeddings .npy with manifest; repeat for several")
        ->required()
        ->check(CLI::ExistingFile);
    c->add_option("--gallery-emb", a->gallery_emb,
                  "the gallery domain's embeddings .npy with manifest")
        ->required()
        ->check(CLI::ExistingFile);
    c->add_option("--split", a->split_file, "train only on rows the split marks train")
        ->check(CLI::ExistingFile);
    c->add_option("-o,--out", a->out, "mapper file to write")->required();
    c->add_option("--json-out", a->json_out, "also write the training report here");
    c->add_option("--loss", a->opt.loss, "loss on the code distance")
        ->transform(CLI::CheckedTransformer(std::map<std::string, MapperLoss>{
            {"contrastive", MapperLoss::Contrastive}, {"triplet", MapperLoss::Triplet}}))
        ->default_str("contrastive");
    c->add_flag("--shared", a->opt.shared, "one branch for every domain");
    c->add_flag("--normalize", a->opt.normalize, "scale each embedding to unit length first");
    c->add_flag("--hard-negatives", a->opt.hard_negatives,
                "negatives from the closest other-class gallery images");
    c->add_option("--hidden", a->opt.hidden, "hidden width")
        ->capture_default_str()
        ->check(positive);
    c->add_option("--code", a->opt.code, "code width")->capture_default_str()->check(positive);
    c->add_option("--pos", a->opt.pos, "same-class gallery images per query per epoch")
        ->capture_default_str()
        ->check(positive);
    c->add_option("--neg", a->opt.neg, "other-class gallery images per query per epoch")
        ->capture_default_str()
        ->check(positive);
    c->add_option("--epochs", a->opt.epochs, "epochs")->capture_default_str()->check(positive);
    c->add_option("--lr", a->opt.lr, "learning rate")->capture_default_str();
    c->add_option("--margin", a->opt.margin, "loss margin")->capture_default_str();
    c->add_option("--seed", a->opt.seed, "random seed")->capture_default_str();
    c->add_option("-t,--threads", a->opt.threads, "threads (0 = all cores)")->capture_default_str();
    add_dist_options(c, a->nproc);
    c->callback([a] { run_train_mapper(*a); });
  }
}

}  // namespace duet::cli

namespace duet::cli {

// duet map — embeddings through one branch of a trained mapper: the Phase II codes.
void register_map(CLI::App& app) {
  struct Args {
    std::string mapper, emb, out, domain;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand(
      "map", "Phase II codes: embeddings through their domain's branch of a mapper");
  c->add_option("--mapper", a->mapper, "mapper file")->required()->check(CLI::ExistingFile);
  c->add_option("--emb", a->emb, "embeddings .npy with manifest")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--domain", a->domain,
                "branch to use (default: the domain the embeddings' manifest names)");
  c->add_option("-o,--out", a->out, "codes .npy to write (with manifest)")->required();
  c->callback([a] {
    auto m = open_mapper(a->mapper);
    Embeddings e = read_embeddings(a->emb);
    const std::string domain = !a->domain.empty()       ? a->domain
                               : e.meta.count("domain") ? e.meta.at("domain")
                                                        : "";
    if (domain.empty()) fail(a->emb, ": its manifest names no domain; give --domain");
    Embeddings out;
    out.x = m->map(domain, e.x);
    out.rows = e.rows;
    out.meta = e.meta;
    out.meta["source"] =
        "mapper:" + a->mapper.substr(a->mapper.find_last_of('/') + 1) + ":" + domain;
    write_embeddings(a->out, out);
    std::printf("%s: %lld x %lld\n", a->out.c_str(), static_cast<long long>(out.x.rows),
                static_cast<long long>(out.x.cols));
  });
}

}  // namespace duet::cli
