// duet/features.h — what a model makes of images (plain row-major arrays, one row per image) and
// the options that rank them. The lowest header of retrieval: model/, index/, serve/ and run/
// include it, and it includes nothing of theirs.
//
//   Features f = model.features("photo", images, hashes);   // duet/model.h
//   Searcher s(f, model.info().rank);                        // duet/search.h
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "duet/embeddings.h"

namespace duet {

// The default config's pair score (duet/fusion.h has the formula). Defaults chosen on validation
// splits carved from the train part of the Sketchy splits (never the test part): see README
// "Choosing hyperparameters". The gate's scale suits about 100 classes.
struct FusionOptions {
  double photo_power = 2.0;     // t: the gallery posterior sharpened to p^t / sum(p^t)
  double unseen_gate = 0.08;    // 0 = no query is treated as unseen
  double unseen_post = 0.25;    // w_p for unseen queries
  double unseen_profile = 2.0;  // w_c for unseen queries
  double bridge = 0.0;          // w_b for seen-class queries
  double unseen_bridge = 0.0;   // w_b for unseen queries
  bool uses_bridge() const { return bridge > 0 || unseen_bridge > 0; }
};

// Re-ranking by diffusion over the gallery graph (duet/diffusion.h). Defaults chosen on the
// validation splits, as the fusion's.
struct DiffusionOptions {
  int k = 10;  // neighbours per gallery item (graph edges; kept when either end chose them)
  double alpha = 0.95;  // how far votes travel: 0 = no diffusion
  int seeds = 20;       // top entries of a query's scores that start the diffusion
  double blend = 0.5;   // weight of the original score distribution in the final score
  // The diffusion runs over the query's shortlist: its best `shortlist` gallery items by score
  // plus the graph neighbours of its seeds (0: the whole gallery). Items outside keep only the
  // blend term. Iscen et al. 2017 truncate the same way; it bounds a query's cost at any gallery
  // size, and a gallery no larger than the shortlist (every benchmark gallery) diffuses whole.
  int shortlist = 1000;
};

// The space the diffusion graph is built in: the Phase I embeddings, the bridge rows
// (duet/bridge.h), or both at unit length side by side.
enum class GraphSpace { Embedding, Bridge, Both };
GraphSpace parse_graph_space(const std::string& name);  // Error naming the choices
const char* graph_space_name(GraphSpace g);

// How a model ranks; recorded in its model folder (duet/model.h), set by `duet run`'s options.
struct RankOptions {
  bool fuse = true;  // fused score (else -||code_q - code_g||^2)
  FusionOptions fusion;
  bool diffusion = true;  // re-rank over the gallery graph (fused score only)
  DiffusionOptions diff;
  GraphSpace graph = GraphSpace::Embedding;
  double prob_a = 0, prob_b = 1;  // Phase II calibration: p(same | d) = sigmoid(a - b d)
};

// The model manifest's "rank" object, and back (Error for a malformed one). Keys a model written
// before them lacks take the value that model ranked with.
nlohmann::json rank_to_json(const RankOptions& r);
RankOptions rank_from_json(const nlohmann::json& j);

// Row i of each matrix describes gallery item i: what a model makes of an image (Model::features)
// and what an index keeps of it.
struct GalleryArrays {
  Matrix emb;     // [n, hidden] Phase I embeddings, member 0's, averaged over its test-time views
                  // (the diffusion graph's space)
  Matrix post;    // [n, C] Phase I class posteriors, averaged over the members
  Matrix code;    // [n, code] Phase II codes (the domain's branch applied to emb)
  Matrix bridge;  // [n, F] bridge rows (duet/bridge.h; 0 columns: none, or the score does not
                  // weigh them)

  // The four, for code that treats them alike.
  std::array<Matrix*, 4> matrices() { return {&emb, &post, &code, &bridge}; }
  std::array<const Matrix*, 4> matrices() const { return {&emb, &post, &code, &bridge}; }
  GalleryArrays rows(int64_t b, int64_t e) const;  // rows [b, e) of each
  void append(const GalleryArrays& o);  // o's rows after these (an empty matrix takes o's width)
};

// Phase I and Phase II features of images of one domain: the rows an index keeps of them.
using Features = GalleryArrays;

struct QueryArrays {
  Matrix post;    // [nq, C]
  Matrix code;    // [nq, code]
  Matrix bridge;  // [nq, F]
};

}  // namespace duet
