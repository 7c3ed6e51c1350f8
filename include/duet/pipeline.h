// duet/pipeline.h — the main job: the whole dual-phase pipeline on one dataset, per split.
//
//   Phase I   sketch encoder, photo encoder (each alone)      -> <out>/<split>/{sketch,photo}_encoder.pt
//             their embeddings + class posteriors              -> <out>/<split>/{sketch,photo}{,.probs}.npy
//   Phase II  mapper on train sketch/photo embeddings          -> <out>/<split>/mapper.pt
//   Retrieval test sketches rank test photos; metrics          -> <out>/metrics.json (+ table on stdout)
// Every step writes its outputs atomically and a stamp <step>.json holding a key of its inputs and
// options; a rerun skips steps whose key is unchanged, so an interrupted run resumes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "duet/diffusion.h"
#include "duet/fusion.h"
#include "duet/encoder.h"

namespace duet {

struct RunOptions {
  std::string data;                                       // dataset root ("" = shared Sketchy subset)
  std::vector<std::string> splits = {"category", "zeroshot21"};  // <data>/splits/<name>.tsv, or .tsv paths
  std::string out = "runs/default";
  std::string config = "default";                         // default | paper
  bool quick = false;                                     // tiny backbone, few classes, short schedules
  int max_classes = 0;                                    // keep the first N classes (0 = all)
  uint64_t seed = 0;
  int threads = 0;
  BackboneOptions backbone;                               // arch/weights ("" = config's choice)
  bool diffusion = true;                                  // default config: re-rank over the gallery graph
  DiffusionOptions diffusion_opt;                         // (retrieval only: changing it retrains nothing)
  FusionOptions fusion_opt;                               // default config's pair score (retrieval only)
  bool json = false;                                      // print metrics JSON instead of the table
};

// Runs (or resumes) the pipeline; returns the metrics JSON text also written to <out>/metrics.json.
std::string run_pipeline(const RunOptions& opt);

}  // namespace duet
