// duet/pipeline.h — the main job: the whole dual-phase pipeline on one dataset, per split.
//
//   Phase I   one encoder per domain (each alone)              -> <out>/<split>/<domain>_encoder.pt
//             their embeddings + class posteriors              ->
//             <out>/<split>/<domain>{,.probs}.npy
//   Phase II  mapper on the train embeddings: a branch per     -> <out>/<split>/mapper.pt
//             query domain and one for the gallery domain
//   Model     everything retrieval needs                       -> <out>/<split>/model/
//   Retrieval each query domain's test images rank the test    -> <out>/metrics.json (+ table on
//   stdout)
//             gallery images; metrics per query domain
// The domains are the dataset's folders: by default sketch queries a photo gallery; any others
// by name (--query-domain, --gallery-domain), each with its kind (duet/domain.h).
// Every step writes its outputs atomically and a stamp <step>.json holding a key of its inputs and
// options; a rerun skips steps whose key is unchanged, so an interrupted run resumes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "duet/bridge.h"
#include "duet/domain.h"
#include "duet/encoder.h"
#include "duet/features.h"

namespace duet {

// The recipes `duet run` and `duet train` know: the paper's, and the default (docs/experiments.md).
enum class Recipe { Default, Paper };
const char* recipe_name(Recipe r);

struct RunOptions {
  std::string data;  // dataset root ("" = shared Sketchy subset)
  // Extra training data: image folders (<root>/<domain>/<class>/<image>) merged by class name into
  // every split's train part, less the split's held-out classes (held_out_classes, duet/dataset.h).
  std::vector<std::string> extra;
  std::vector<std::string> splits = {"category",
                                     "zeroshot21"};  // <data>/splits/<name>.tsv, or .tsv paths
  std::string out = "runs/default";
  Recipe config = Recipe::Default;
  bool quick = false;                       // tiny backbone, few classes, short schedules
  int max_classes = 0;                      // keep the first N classes (0 = all)
  std::vector<std::string> query_domains;   // "" = kDefaultQueryDomain (duet/domain.h)
  std::string gallery_domain;               // "" = kDefaultGalleryDomain
  std::map<std::string, DomainKind> kinds;  // overrides of detect_kind's rule
  uint64_t seed = 0;
  int threads = 0;
  double preserve = 0;         // Phase I knowledge preservation (duet/phase1.h)
  double preserve_source = 0;  // the same for query domains, each image keeping
                               // its source gallery image's distribution (SAKE)
  double distill = -1;         // query domains learn their source images' gallery
                               // posteriors (duet/phase1.h); < 0: the config's choice
  BackboneOptions backbone;    // arch/weights ("" = config's choice)
  RankOptions rank;            // the default config's retrieval (changing it retrains
                               // nothing, but a bridge it weighs or builds its graph over);
                               // prob_a, prob_b come from Phase II
  BridgeOptions bridge_opt;    // default config's bridge (duet/bridge.h)
  bool json = false;           // print metrics JSON instead of the table
};

// Runs (or resumes) the pipeline; returns the metrics JSON text also written to <out>/metrics.json.
// Data-parallel ranks (duet/dist.h) train both phases and embed the test images together; rank 0
// alone scores, writes and returns the metrics (the others return "").
std::string run_pipeline(const RunOptions& opt);

// `duet train`: the deployable model from every image of the folder opt.data (no test part),
// written to model_dir, the same folder `duet run` writes per split. Intermediate files (encoders,
// embeddings, stamps) go to opt.out, so an interrupted training resumes. Returns a JSON report
// (rank 0; the other data-parallel ranks return "").
std::string train_model(const RunOptions& opt, const std::string& model_dir);

}  // namespace duet
