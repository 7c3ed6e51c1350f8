// duet/phase2.h — Phase II: a small network over the frozen Phase I embeddings.
//
// Each domain has a branch in -> hidden (ReLU) -> code (1024 -> 1024 -> 125 by default), or all
// share one (--shared): one per query domain (sketch, art, ...) and one for the gallery domain,
// into one code space. Trained on (query, gallery) pairs drawn afresh every epoch: for each query
// image, of any query domain, `pos` gallery images of its class and `neg` of other classes, with a
// contrastive loss on the Euclidean distance of the codes, or a triplet loss on (query, same-class
// gallery image, other-class gallery image). After training, p(same class | distance) =
// sigmoid(a - b * distance) is fitted on fresh pairs. open_mapper (duet/inference.h) reads the
// file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "duet/embeddings.h"
#include "duet/ledger.h"

namespace duet {

// The loss on the code distance: contrastive pairs, or triplets (query, same-class gallery item,
// other-class gallery item).
enum class MapperLoss { Contrastive, Triplet };
const char* loss_name(MapperLoss l);  // "contrastive" | "triplet"

struct MapperOptions {
  MapperLoss loss = MapperLoss::Contrastive;
  bool shared = false;     // one branch for both domains
  bool normalize = false;  // scale each embedding to unit length before its branch
  int hidden = 1024, code = 125;
  int pos = 10, neg = 10;       // gallery images per query per epoch
  bool hard_negatives = false;  // negatives from the 50 closest other-class gallery images
  int epochs = 30, batch = 256;
  double lr = 1e-3, weight_decay = 1e-4, margin = 1.0;
  uint64_t seed = 0;
  int threads = 0;
};

struct MapperTrainResult {
  std::vector<double> epoch_loss;
  std::map<std::string, int64_t> queries;  // usable query rows per domain
  int64_t gallery = 0, pairs_per_epoch = 0;
  double prob_a = 0, prob_b = 0;  // p(same) = sigmoid(a - b * d)
  int ranks = 1;                  // data-parallel workers (duet/dist.h)
  Ledger ledger;
  std::string to_json() const;
};

// Trains on the rows of each query domain's embeddings and the gallery domain's; domains and
// classes come from the manifests. Throws Error on mismatched widths, a domain given twice, or a
// query domain with no class in common with the gallery.
MapperTrainResult train_mapper(const std::vector<Embeddings>& queries, const Embeddings& gallery,
                               const MapperOptions& opt, const std::string& out_file);

}  // namespace duet
