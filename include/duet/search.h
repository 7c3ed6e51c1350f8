// duet/search.h — the one retrieval path: a gallery's rows in, a query's ranked rows out.
//
//   Searcher s(gallery, rank);               // gallery: Features of every item (duet/features.h)
//   Ranking r = s.search(query_row(q, 0), 10);               // one query's top 10
//   evaluate_scores(nq, s.size(), s.scores(queries), ...);   // what `duet run` reports
//
// One function ranks, rank(): the unseen-class gate, the best rows by the score before diffusion
// with the query's score mass, the seeds' graph neighbours, diffusion over the shortlist, the top
// k. It reads the gallery through a RowSource: every row exactly, FAISS candidates above the
// exact limit, or the shards of an index over HTTP (duet/shards.h). `duet run`'s metrics, `duet
// search` and the server all rank through it, so the benchmark measures what users get. The
// score is the config's: the fused pair score with the unseen-class gate (duet/fusion.h)
// re-ranked by diffusion over the gallery graph (duet/diffusion.h), or for the paper config the
// Phase II code distance alone.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "duet/diffusion.h"
#include "duet/embeddings.h"
#include "duet/features.h"
#include "duet/fusion.h"
#include "duet/score.h"

namespace duet {

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

// The FAISS indexes that propose candidates above the exact limit: IVF lists of the float rows,
// or of 8-bit scalar quantised rows; BySize: flat up to ScaleOptions::flat_limit, sq8 above.
enum class IndexKind { BySize, IvfFlat, IvfSq8 };

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
  IndexKind kind = IndexKind::BySize;  // the candidate indexes above the exact limit
  int lists = 0;                       // IVF lists (0: about sqrt(n))
  int nprobe = 32;                     // IVF lists visited per query
  int candidates = 1000;               // proposals per index
  int mass_sample = 4096;  // rows scored to estimate a query's score mass outside its candidates
};

// Positions of the best k of the scored rows (rows[i] scored s[i]; k <= 0: none), best first:
// higher score, then lower row, the order every ranking here uses.
std::vector<size_t> best_first(const std::vector<int64_t>& rows, const std::vector<float>& s,
                               int64_t k);

// One query's rows (bridge: null when the score does not weigh it; post: null for the paper
// config's code distance).
struct QueryRow {
  const float* code = nullptr;
  const float* post = nullptr;
  const float* bridge = nullptr;
};
// Row i of each matrix (null for a matrix without columns): a query, or a gallery row as one.
QueryRow query_row(const QueryArrays& q, int64_t i);
QueryRow query_row(const GalleryArrays& g, int64_t i);

// Some gallery rows with the scores one query gives them before diffusion, and their graph rows
// when asked (edges into rows of the whole gallery, CSR over these rows).
struct ScoredRows {
  std::vector<int64_t> rows;
  std::vector<float> score;
  std::vector<int64_t> adj_start{0};  // [rows + 1]
  std::vector<int64_t> adj_col;
  std::vector<float> adj_w;
  float top = 0;    // best() only: the best score over every row of the gallery
  double mass = 0;  // best() only: sum(exp(s - top)) over every row (estimated outside FAISS
                    // candidates, summed over shards)
  void add_row(int64_t row, float s) { rows.push_back(row), score.push_back(s); }
  void add_edges(const int64_t* col, const float* w, int64_t n);  // the last row's, then closes it
};

// One query against a gallery's rows, asked in this order by rank(). unseen: the gate's decision.
class RowQuery {
 public:
  virtual ~RowQuery() = default;
  // The unseen-class gate's evidence: the largest p_q . p_g over the rows (the fused score only).
  virtual float gate_evidence() = 0;
  // The best `limit` rows, best first (higher score, then lower row), with top and mass.
  virtual ScoredRows best(bool unseen, int64_t limit, bool graph) = 0;
  // The scores of some other rows (sorted, distinct); Error for a row not in the gallery.
  virtual ScoredRows rows(bool unseen, const std::vector<int64_t>& rows, bool graph) = 0;
};

// A gallery as rank() reads it.
class RowSource {
 public:
  virtual ~RowSource() = default;
  virtual int64_t size() const = 0;
  virtual bool has_graph() const = 0;  // graph rows come with the scores when asked
  virtual std::unique_ptr<RowQuery> query(const QueryRow& q) const = 0;
};

// The top k of a query (k <= 0 or k >= rows.size(): every row) under the options. With a graph
// and diffusion, the best rows (the shortlist, or every row when the gallery is no larger) and
// the graph neighbours of the best `seeds` are diffused with p = exp(s - top) over the sub-graph
// they span, the blend term divided by the query's mass over the whole gallery; rows outside
// keep the blend term alone.
Ranking rank(const RowSource& rows, const RankOptions& opt, const QueryRow& q, int64_t k);

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

  int64_t size() const;
  const RankOptions& options() const;
  // The graph in use (null without diffusion).
  const std::shared_ptr<const GalleryGraph>& graph() const;
  bool uses_bridge() const;  // the score weighs bridge rows: queries need one

  // The rows as rank() reads them: FAISS candidates above the exact limit, else every row.
  const RowSource& rows() const;

  // Top k of one query through rows() (k <= 0 or k >= size(): the whole gallery; every row is
  // then scored, as it is above the candidates' reach).
  Ranking search(const QueryRow& q, int64_t k) const;
  std::vector<Ranking> search(const QueryArrays& q, int64_t k) const;  // each query alone

  // Every gallery item's final score for queries [q0, q1), for evaluate_scores: rank() over every
  // row, each query alone, so a sketch searched on its own gets exactly the scores it gets in a
  // benchmark run. diffuse = false: the score before diffusion. unseen (if given) receives the
  // gate per query.
  ScoreBlockFn scores(const QueryArrays& q, bool diffuse = true,
                      std::vector<char>* unseen = nullptr) const;

  struct State;  // the gallery side, shared with the row sources

 private:
  std::shared_ptr<const State> s_;
  std::unique_ptr<RowSource> exact_, cand_;  // cand_: null up to the exact limit
  void check_queries(const QueryArrays& q) const;
};

}  // namespace duet
