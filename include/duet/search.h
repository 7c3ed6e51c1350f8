// duet/search.h — the one retrieval path: a gallery's plain arrays in, ranked gallery rows out.
//
//   Searcher s(gallery, rank);          // gallery: Phase I embedding, posteriors, Phase II code
//   per row auto r = s.search(queries, 10);     // queries: posteriors and code per row -> top 10
//   each evaluate_scores(nq, s.size(), s.scores(queries), ...);   // what `duet run` reports
//
// `duet run`'s metrics, `duet search` and the server all rank through this object, so the
// benchmark measures what users get. The score is the config's: the fused pair score with the
// unseen-class gate (duet/fusion.h) re-ranked by diffusion over the gallery graph
// (duet/diffusion.h), or for the paper config the Phase II code distance alone.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "duet/diffusion.h"
#include "duet/embeddings.h"
#include "duet/fusion.h"
#include "duet/metrics.h"

namespace duet {

// How a model ranks; recorded in its model folder (duet/model.h).
struct RankOptions {
  bool fuse = true;  // fused score (else -||code_q - code_g||^2)
  FusionOptions fusion;
  bool diffusion = true;  // re-rank over the gallery graph (fused score only)
  DiffusionOptions diff;
  std::string graph = "embedding";  // the graph's space: "embedding" (Phase I), "bridge", or "both"
  double prob_a = 0, prob_b = 1;    // Phase II calibration: p(same | d) = sigmoid(a - b d)
};

// Row i of each matrix describes gallery item i: what a model makes of an image (Model::features)
// and what an index keeps of it.
struct GalleryArrays {
  Matrix emb;     // [n, hidden] Phase I embeddings, member 0's, averaged over its test-time views
                  // (the diffusion graph's space)
  Matrix post;    // [n, C] Phase I class posteriors, averaged over the members
  Matrix code;    // [n, code] Phase II codes (the domain's branch applied to emb)
  Matrix bridge;  // [n, F] bridge rows (duet/bridge.h; 0 columns: none, or the score does not weigh
                  // them)

  // The four, for code that treats them alike.
  std::array<Matrix*, 4> matrices() { return {&emb, &post, &code, &bridge}; }
  std::array<const Matrix*, 4> matrices() const { return {&emb, &post, &code, &bridge}; }
  GalleryArrays rows(int64_t b, int64_t e) const;  // rows [b, e) of each
  void append(
      const GalleryArrays& o);  // o's rows after these (a matrix without rows takes o's width)
};

struct QueryArrays {
  Matrix post;    // [nq, C]
  Matrix code;    // [nq, code]
  Matrix bridge;  // [nq, F]
};

// The diffusion graph of a gallery as the options ask for it (null: no diffusion, or fewer than
// two items), over RankOptions::graph: the Phase I embeddings, the bridge rows, or both at unit
// length side by side (each half weighing the same).
std::shared_ptr<const GalleryGraph> gallery_graph(const GalleryArrays& g, const RankOptions& opt);

struct Hit {
  int64_t row = 0;  // gallery row
  float score = 0;  // higher is better
};

struct Ranking {
  std::vector<Hit> hits;  // best first; equal scores by lower row
  bool unseen = false;    // the unseen-class gate fired for this query
};

// How search() finds a query's results in a large gallery. Up to exact_limit items every item is
// scored (exactly the benchmark's ranking). Above it, three FAISS indexes, over the codes, the
// sharpened posteriors and the posterior profiles, each propose `candidates` items; their union
// is scored exactly (from the float rows), and the diffusion's shortlist
// (DiffusionOptions::shortlist) is taken from it instead of from the whole gallery, the blend
// term normalised by the query's score mass over the whole gallery (estimated from a fixed sample
// of rows outside the candidates). So the paths differ only where the candidates miss an item the
// exhaustive scoring would have put on the shortlist; bench/search_latency measures the recall
// of that. The indexes by gallery size (docs/scaling.md has the measurements): IVF lists of the
// float rows up to flat_limit; beyond it the compressed tier: IVF lists of 8-bit scalar quantised
// rows (a quarter of the bytes), and the scorer keeps the codes and posteriors alone, deriving the
// rest of a row when it scores it (FusedScore's derive_rows), about 1.5 KB a photo in all.
struct ScaleOptions {
  int64_t exact_limit = 50000;
  int64_t flat_limit = 2000000;
  std::string kind;        // "ivf-flat" or "ivf-sq8": this kind above the exact limit ("": by size)
  int lists = 0;           // IVF lists (0: about sqrt(n))
  int nprobe = 32;         // IVF lists visited per query
  int candidates = 1000;   // proposals per index
  int mass_sample = 4096;  // rows scored to estimate a query's score mass outside its candidates
};

// Scores some gallery rows for the query at hand (FusedScore::score_rows).
using RowScorer = std::function<void(const std::vector<int64_t>& rows, float* out)>;

// Rows the shortlist added (seed neighbours that were not among the scored rows) and their
// final scores.
struct Added {
  std::vector<int64_t> rows;
  std::vector<float> score;
};

// A query's diffusion over its shortlist (DiffusionOptions::shortlist): the best `shortlist` of
// the n scored rows (rows sorted; ties by lower row; 0: all of them) and the graph neighbours of
// the best `seeds`, those not among rows scored by score_more, diffused over the sub-graph they
// span with p = exp(s - top); total is the query's mass sum(p) over the whole gallery. Writes
// every row's final score to out [n] (which may be s): the diffused score on the shortlist,
// blend * p / total (the blend term alone) off it. Searcher's two paths and a front over shards
// (duet/shards.h) all diffuse through it.
Added diffuse_shortlist(const GalleryGraph& graph, const DiffusionOptions& opt, const int64_t* rows,
                        const float* s, size_t n, float top, double total,
                        const RowScorer& score_more, float* out);

class Searcher {
 public:
  // Builds the diffusion graph from gallery.emb when the options ask for one. The searcher keeps
  // the gallery's codes and posteriors (moved in, or copied).
  Searcher(GalleryArrays gallery, const RankOptions& opt);
  // With a graph built earlier over the same rows (a gallery index stores one).
  Searcher(GalleryArrays gallery, const RankOptions& opt, std::shared_ptr<const GalleryGraph> graph,
           const ScaleOptions& scale = {});
  ~Searcher();
  Searcher(Searcher&&) noexcept;
  Searcher& operator=(Searcher&&) noexcept;

  // "exact", or the candidate indexes above the exact limit:
  // "ivf<lists>,flat|sq8,nprobe<p>,cand<c>".
  std::string index_type() const;
  static std::string index_type_for(int64_t n, const ScaleOptions& scale = {});

  int64_t size() const { return n_; }
  const RankOptions& options() const { return opt_; }
  // The graph in use (null without diffusion).
  const std::shared_ptr<const GalleryGraph>& graph() const { return graph_; }

  // Every gallery item's final score for queries [q0, q1), block by block, for evaluate_scores.
  // Each query is scored alone, so its scores do not depend on the queries beside it: a sketch
  // searched on its own gets exactly the scores it gets in a benchmark run.
  // diffuse = false: the score before diffusion. unseen (if given) receives the gate per query.
  ScoreBlockFn scores(const QueryArrays& q, bool diffuse = true,
                      std::vector<char>* unseen = nullptr) const;
  // Top k of each query (k <= 0 or k >= size(): the whole gallery). Exhaustive, hence exactly the
  // ranking scores() gives, up to the exact limit; through candidates above it.
  std::vector<Ranking> search(const QueryArrays& q, int64_t k) const;

  // A shard's part of one query (duet/shards.h), for a front that merges the shards, over every
  // row up to the exact limit (the scores as scores(q, false) gives them) and over the
  // candidates above it (as search() finds them). The gate's evidence: the largest p_q . p_g (the
  // fused score only). best_rows: the best `limit` rows by the score before diffusion, with the
  // gate decided over the whole gallery, their best score and the score mass sum(exp(s - top))
  // over all rows (outside the candidates estimated, as search() does). row_scores: some rows'.
  struct Part {
    std::vector<int64_t> rows;  // best first, ties by lower row
    std::vector<float> score;
    float top = 0;
    double mass = 0;
  };
  // bridge_q: the query's bridge row (null when the score does not weigh it).
  float gate_evidence(const float* code_q, const float* post_q, const float* bridge_q) const;
  Part best_rows(const float* code_q, const float* post_q, const float* bridge_q, bool unseen,
                 int64_t limit) const;
  std::vector<float> row_scores(const float* code_q, const float* post_q, const float* bridge_q,
                                bool unseen, const std::vector<int64_t>& rows) const;
  bool uses_bridge() const { return fused_ && fused_->bridge_rows(); }

 private:
  int64_t n_ = 0;
  RankOptions opt_;
  std::shared_ptr<const FusedScore> fused_;
  PreparedGallery code_p_;  // paper config: the gallery codes, with their squared norms
  std::shared_ptr<const GalleryGraph> graph_;
  ScaleOptions scale_;
  struct Ann;  // the FAISS indexes of the candidate path
  std::unique_ptr<Ann> ann_;
  // One query's rows (bridge null when unused).
  struct Q {
    const float *code, *post, *bridge;
  };
  Q query_row(const float* code_q, const float* post_q,
              const float* bridge_q) const;  // checks the bridge row
  Ranking search_candidates(const Q& q, int64_t k) const;
  std::vector<int64_t> candidates(const Q& q) const;  // sorted, distinct
  void score_some(const Q& q, bool unseen, const std::vector<int64_t>& rows,
                  float* out) const;  // the score before diffusion
  double mass_outside(const Q& q, bool unseen, const std::vector<int64_t>& cand, float top) const;
  std::vector<float> base_scores(const Q& q, bool unseen) const;  // every row
};

}  // namespace duet
