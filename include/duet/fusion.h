// duet/fusion.h — the default config's score for a (sketch, photo) pair: Phase II's code distance
// and both Phase I classifiers' class posteriors, taken as independent evidence that the two show
// the same class.
//
//     score = log p(same | code distance) + w_p log(p_s . p_p') + w_c cos(l_s, l_p) + w_b b_s . g_p
//
// p_s, p_p are the sketch and photo posteriors over the classes the encoders learnt, p_p' the photo
// posterior sharpened to p_p^t / sum(p_p^t), and l = log p minus its mean: the posterior's profile
// (which known classes, and how strongly, an image resembles). A seen-class query finds some
// gallery photo that both classifiers put in its class, so max_g p_s . p_g is large; when even the
// best match falls below `unseen_gate` the query is taken to be of a class neither encoder learnt,
// and class identity says little: its score weighs the posterior product by `unseen_post` and
// adds the profile cosine at `unseen_profile`. Other queries use w_p = 1, w_c = 0. b_s . g_p is
// the cosine of the two images in the gallery's frozen ImageNet features (duet/bridge.h), weighed
// `bridge` for seen and `unseen_bridge` for unseen queries (0: the term is off; a model without a
// bridge has neither).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "duet/embeddings.h"
#include "duet/features.h"
#include "duet/score.h"

namespace duet {

// One gallery posterior row p of C classes, transformed as the score reads it: sharpened to
// p^t / sum(p^t), or the profile: log p minus its mean over the classes (a floor keeps a zero
// finite) at unit length. The gallery's stored arrays and the rows derived when they are scored
// come from these same functions, so they agree bit for bit.
void sharpen_row(const float* p, int64_t C, double t, float* out);
void profile_row(const float* p, int64_t C, float* out);
Matrix profiles(const Matrix& posteriors);  // profile_row of each row

struct FusedScorer {
  ScoreBlockFn score;        // scores [q1 - q0, gallery] for queries q0..q1, higher is better
  std::vector<char> unseen;  // per query: the gate fired
};

// The gallery side of the score, prepared once (sharpened and centred-log posteriors) and then
// asked for any number of query batches.
class FusedScore {
 public:
  // code_g [ng, d]: Phase II codes; post_g [ng, C]: Phase I posteriors; same_prob maps a code
  // distance to p(same class); bridge_g [ng, F]: bridge rows (needed when the options weigh
  // them). Throws Error when the shapes disagree or an option is negative.
  // derive_rows: keep the codes and posteriors alone and derive each row's sharpened posterior
  // and profile when the row is scored, so a gallery takes half the memory (the compressed tier
  // of duet/search.h); scorer() then scores every row through score_rows.
  FusedScore(Matrix code_g, Matrix post_g, std::function<double(double)> same_prob,
             const FusionOptions& opt, bool derive_rows = false, Matrix bridge_g = Matrix());
  // code_q [nq, d], post_q [nq, C] over the gallery's C classes. The scorer holds its own copies
  // of the queries and shares the gallery side with this object, which it may outlive. unseen
  // (one per query): the gate decided elsewhere (a shard of a larger gallery, duet/shards.h);
  // none: decided here, over this gallery. bridge_q [nq, F]: the queries' bridge rows (when the
  // options weigh them).
  FusedScorer scorer(const Matrix& code_q, const Matrix& post_q,
                     const std::vector<char>* unseen = nullptr,
                     const Matrix& bridge_q = Matrix()) const;
  // The gate's evidence for one query: max over the gallery of p_q . p_g (unseen below the gate).
  float gate_evidence(const float* post_q) const;
  int64_t size() const { return ng_; }
  const FusionOptions& options() const { return opt_; }
  const Matrix& codes() const { return *code_p_.g; }
  const Matrix& posteriors() const { return *post_p_.g; }
  const Matrix* bridge_rows() const { return bridge_p_.g.get(); }  // null: the term is off
  // Rows [i0, i1) of the gallery's sharpened posteriors p_p' and profiles (the gate > 0 only),
  // stored or derived, into out [(i1 - i0), C].
  void sharpened_rows(int64_t i0, int64_t i1, float* out) const;
  void profile_rows(int64_t i0, int64_t i1, float* out) const;

  // One query against some gallery rows, by the same formula (computed row by row, in float
  // lanes, not through the block products of scorer(), so it agrees with it up to float
  // rounding). unseen: the gate. Rows may repeat and come in any order. bridge_q: the query's
  // bridge row (when the options weigh it).
  void score_rows(const float* code_q, const float* post_q, bool unseen,
                  const std::vector<int64_t>& rows, float* out,
                  const float* bridge_q = nullptr) const;
  // The gate over some rows: its evidence (max over the rows of p_q . p_g), and true when that is
  // below unseen_gate (always false when the gate is off).
  float gate_evidence_among(const float* post_q, const std::vector<int64_t>& rows) const;
  bool unseen_among(const float* post_q, const std::vector<int64_t>& rows) const;

 private:
  int64_t ng_ = 0;
  PreparedGallery code_p_, post_p_, sharp_p_, profile_p_,
      bridge_p_;  // ready for embedding_scorer (no sharp_p_ or
                  // profile_p_ when rows are derived)
  std::function<double(double)> same_prob_;
  FusionOptions opt_;
};

// One batch of queries against one gallery: FusedScore(code_g, post_g, ...).scorer(code_q, post_q).
FusedScorer fused_scorer(const Matrix& code_q, const Matrix& code_g,
                         std::function<double(double)> same_prob, const Matrix& post_q,
                         const Matrix& post_g, const FusionOptions& opt,
                         const Matrix& bridge_q = Matrix(), const Matrix& bridge_g = Matrix());

}  // namespace duet
