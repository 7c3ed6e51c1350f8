// src/phase1/trunk_cache.h — activations of the frozen lower backbone stages, once per view.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "backbone/nets.h"
#include "duet/dataset.h"
#include "duet/domain.h"
#include "duet/ledger.h"

namespace duet {

struct TrunkCache {
  int split = 0;  // stages [0, split) are cached
  int views = 0;
  torch::Tensor act;  // [views, N, C, H, W] float32: stage split-1's output per sample and view
  // Views [from, to) kept together: the seedless ones, then the seed's own. pooled_file: where
  // frozen_pooled keeps their features ("" = nowhere: in memory only).
  struct Group {
    int from = 0, to = 0;
    std::string pooled_file;
  };
  std::vector<Group> groups;
};

// Computes on `workers` threads (or loads from cache_dir, keyed by backbone, samples, split, views,
// seed and framing) the cache. With `frame`, images are cropped to their strokes before the views.
// Adds the image passes and FLOPs it spent to `ledger`. The image and its mirror (views 0 and 1)
// do not depend on the seed, so they are kept apart from the augmented views and shared by every
// seed (a run's Phase I members).
TrunkCache build_trunk_cache(BackboneNetImpl& net, const std::string& weights_id, const Dataset& d,
                             const std::vector<Sample>& samples, int split, int views,
                             uint64_t seed, bool frame, DomainKind kind,
                             const std::string& cache_dir, int workers, Ledger& ledger);

// The untouched backbone's pooled features of every cached view, [views, N, D], through net's top
// stages (call it before fine-tuning changes them): each group of views read from beside the cache
// when another run of the same images kept it (another seed: the seedless views), else computed
// (the FLOPs added to `ledger`) and kept there.
torch::Tensor frozen_pooled(const TrunkCache& c, BackboneNetImpl& net, Ledger& ledger);

// Forward FLOPs of one image through stages [from, to) (+ pool when to == num_stages()).
double stage_flops(BackboneNetImpl& net, int from, int to);

}  // namespace duet
