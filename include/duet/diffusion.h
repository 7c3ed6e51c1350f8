// duet/diffusion.h — re-ranking by diffusion over the gallery's own neighbourhood graph.
//
// Photos of one class sit close together in the photo embedding space even for classes no encoder
// was trained on (photo-to-photo mAP@all 0.67 on the zero-shot test photos, against 0.30 for
// sketch-to-photo). Diffusion lets a query's few confident matches vote for their gallery
// neighbours: with S the symmetrically normalised k-NN graph of the gallery, the query's top
// `seeds` scores as a distribution y, and alpha in (0, 1),
//     f = (1 - alpha) (I - alpha S)^-1 y,       final score = f + blend * p,
// where p is the query's whole score distribution (Zhou et al. 2004 label propagation; Iscen et
// al. 2017 for retrieval). The graph is built once per gallery with FAISS; each query then costs a
// few sparse products over it.
#pragma once

#include <cstdint>
#include <vector>

#include "duet/embeddings.h"
#include "duet/features.h"

namespace duet {

// Above this many items the graph's neighbours are approximate (see GalleryGraph).
constexpr int64_t kGraphExactLimit = 50000;

class GalleryGraph {
 public:
  // features [n, d]: one row per gallery item; edges weigh max(cos, 0)^3 between k nearest
  // neighbours. Throws Error when n < 2 or the options are out of range. Up to exact_limit items
  // the neighbours are exact (all pairs, n^2 d); above it each item's come from the items of the
  // 8 inverted lists (k-means over sqrt(n) lists) nearest its own list, one matrix product per
  // list (n (8 n / lists) d): minutes at 1M where all pairs take hours. Deterministic either way.
  GalleryGraph(const Matrix& features, const DiffusionOptions& opt,
               int64_t exact_limit = kGraphExactLimit);

  // A graph built earlier (a gallery index stores one): the CSR arrays csr_* return, checked.
  GalleryGraph(int64_t n, const DiffusionOptions& opt, std::vector<int64_t> start,
               std::vector<int64_t> col, std::vector<float> w);

  int64_t size() const { return n_; }
  const std::vector<int64_t>& csr_start() const { return start_; }  // [n + 1]
  const std::vector<int64_t>& csr_col() const { return col_; }      // [edges]
  const std::vector<float>& csr_weight() const { return w_; }       // [edges]
  // The same graph re-ranking with other alpha / seeds / blend (k is the graph's own).
  void set_options(const DiffusionOptions& opt);

  // probs [n]: a query's non-negative score for every gallery item (any scale; need not sum to 1).
  // Writes the re-ranked scores to out [n] (higher is better).
  void rerank(const float* probs, float* out) const;
  // The same over the sub-graph of `nodes` (sorted, distinct gallery rows): probs [m] and out [m]
  // are indexed like nodes. For a query's shortlist (see search.cpp). total (> 0):
  // the query's score mass over the whole gallery, which the blend term divides by as rerank's
  // does (the nodes' own sum when not given: then the blend weighs more than over the whole).
  void rerank_subset(const std::vector<int64_t>& nodes, const float* probs, float* out,
                     double total = 0) const;

 private:
  int64_t n_ = 0;
  DiffusionOptions opt_;
  std::vector<int64_t> start_;  // CSR rows of the normalised graph S
  std::vector<int64_t> col_;
  std::vector<float> w_;
};

}  // namespace duet
