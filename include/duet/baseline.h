// duet/baseline.h — reference points that need no Phase I/II training.
//
//   hog:   HOG descriptors of a drawing as it is and of an image's Canny edge map (both 128x128
//          greyscale, 8x8 cells, 16x16 blocks, 9 bins), ranked by cosine similarity.
//   raw:   ImageNet backbone features of both domains (MobileNetV2: 1280-d), cosine, no training.
//   siamese: the end-to-end method dual-phase is compared against: one backbone per domain, each
//          -> FC-hidden -> FC-code (L2-normalised), trained jointly on sketch/photo triplets
//          through the full networks (or from stage `train_from` up), evaluated as each FLOP budget
//          is spent.
// All evaluate the test images of the query domain against those of the gallery domain of a split,
// like `duet run` (default: sketch against photo).
#pragma once

#include <string>
#include <vector>

#include "duet/dataset.h"
#include "duet/domain.h"
#include "duet/encoder.h"
#include "duet/ledger.h"
#include "duet/metrics.h"

namespace duet {

struct BaselineOptions {
  std::string split_file;                    // <data>/splits/<name>.tsv
  std::string data;                          // "" = the split file's dataset root
  std::string query_domain, gallery_domain;  // "" = the defaults of duet/domain.h
  BackboneOptions backbone;
};

struct BaselineResult {
  RetrievalMetrics metrics;
  double wall_s = 0;  // everything, evaluation included
  Ledger train;       // training only (zero for hog/raw)
  int64_t steps = 0;  // siamese: optimiser steps taken
  double epochs = 0;  // siamese: passes over the train sketches
  std::string to_json() const;
};

struct SiameseOptions {
  BaselineOptions base;
  // Evaluate (and finally stop) once training has spent each of these many TFLOPs; one training
  // run serves every budget, the learning rate being constant. Empty: evaluate after all epochs.
  std::vector<double> budgets_tflops;
  int epochs = 100;    // upper bound on passes over the train sketches
  int batch = 16;      // sketches per step, each with one photo of its class
  int train_from = 0;  // backbone stages below this stay frozen (0: the full networks)
  int hidden = 1024, code_dim = 125;
  double lr = 1e-4;  // backbones; the heads train at 10x
  double weight_decay = 1e-4, margin = 0.2;
  uint64_t seed = 0;
};

// The split's query and gallery domains (resolved as `duet run` does), their test samples and
// (once decide_kinds has run, after the other checks) their kinds.
struct BaselineSides {
  Domains doms;
  std::vector<Sample> q, g;
  DomainKind qk = DomainKind::Image, gk = DomainKind::Image;
  void decide_kinds(const Dataset& d);
};
BaselineSides baseline_sides(const Dataset& d, const BaselineOptions& opt);

BaselineResult baseline_hog(const BaselineOptions& opt);
BaselineResult baseline_raw(const BaselineOptions& opt);
std::vector<BaselineResult> baseline_siamese(const SiameseOptions& opt);  // one per budget

}  // namespace duet
