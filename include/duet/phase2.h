// duet/phase2.h — Phase II: a small network over the frozen Phase I embeddings.
//
// Each domain has a branch in -> hidden (ReLU) -> code (1024 -> 1024 -> 125 by default), or both
// share one (--shared). Trained on sketch/photo pairs drawn afresh every epoch: for each sketch,
// `pos` photos of its class and `neg` of other classes, with a contrastive loss on the Euclidean
// distance of the codes, or a triplet loss on (sketch, same-class photo, other-class photo).
// After training, p(same class | distance) = sigmoid(a - b * distance) is fitted on fresh pairs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "duet/embeddings.h"
#include "duet/ledger.h"

namespace duet {

struct MapperOptions {
  std::string loss = "contrastive";  // contrastive | triplet
  bool shared = false;               // one branch for both domains
  bool normalize = false;            // scale each embedding to unit length before its branch
  int hidden = 1024, code = 125;
  int pos = 10, neg = 10;            // photos per sketch per epoch
  bool hard_negatives = false;       // negatives from the 50 closest other-class photos
  int epochs = 30, batch = 256;
  double lr = 1e-3, weight_decay = 1e-4, margin = 1.0;
  uint64_t seed = 0;
  int threads = 0;
};

struct MapperTrainResult {
  std::vector<double> epoch_loss;
  int64_t sketches = 0, photos = 0, pairs_per_epoch = 0;
  double prob_a = 0, prob_b = 0;  // p(same) = sigmoid(a - b * d)
  Ledger ledger;
  std::string to_json() const;
};

// Trains on the rows of `query` (sketch side) and `gallery` (photo side); classes come from the
// manifests. Throws Error on mismatched widths or when no class has both sketches and photos.
MapperTrainResult train_mapper(const Embeddings& query, const Embeddings& gallery, const MapperOptions& opt,
                               const std::string& out_file);

class Mapper {
 public:
  virtual ~Mapper() = default;
  virtual int64_t in_dim() const = 0;
  virtual int64_t code_dim() const = 0;
  // side 0 = query branch (sketch), 1 = gallery branch (photo): x [N, in_dim] -> codes [N, code_dim]
  virtual Matrix map(int side, const Matrix& x) const = 0;
  // Probability that a pair whose codes are `distance` apart shows the same class:
  // sigmoid(prob_a() - prob_b() * distance).
  virtual double probability(double distance) const = 0;
  virtual double prob_a() const = 0;
  virtual double prob_b() const = 0;
};

std::unique_ptr<Mapper> open_mapper(const std::string& file);

}  // namespace duet
