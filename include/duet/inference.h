// duet/inference.h — the trained parts of a model as queries use them, each read from its file
// and checked: Phase I encoders (trained by duet/phase1.h), the Phase II mapper (duet/phase2.h)
// and the bridge (duet/bridge.h). A model folder (duet/model.h) loads one set of them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "duet/embeddings.h"
#include "duet/encoder.h"

namespace duet {

// --- Phase I: an encoder file --------------------------------------------------------------------

// A trained encoder file: image -> hidden embedding (the Encoder interface), and its classifier.
class PhaseOneEncoder;

// weights: the backbone file to load the frozen stages from instead of the recorded one (a model
// folder carries its own copy). frozen_features: also keep the backbone's own top stages, for
// encode_logits' frozen output (a second copy of them: only when wanted). Throws Error naming the
// file when it is missing, damaged or of another format.
std::unique_ptr<PhaseOneEncoder> open_encoder(const std::string& file, int threads = 0,
                                              const std::string& weights = "",
                                              bool frozen_features = false);

// One member's arrays for encode_members: its encoder, its inputs x [n * views, 3, S, S] (views:
// its tta_views(); image i's at rows [i * views, (i + 1) * views)) and encode_logits' outputs for
// them (nullptr: not wanted).
struct MemberRows {
  PhaseOneEncoder* encoder = nullptr;
  const float* x = nullptr;
  float* emb = nullptr;
  float* logits = nullptr;
  float* frozen = nullptr;
};
// encode_logits for the members of one model over the same n images. Their seedless views
// (augment.h) are the same inputs for every member, so where a member's frozen lower stages are
// member 0's (arch, weights, split, framing), those views go through them once: the outputs are
// what each member's encode_logits gives, for less work.
void encode_members(int64_t n, const std::vector<MemberRows>& members);

class PhaseOneEncoder final : public Encoder {
 public:
  ~PhaseOneEncoder() override;
  int input_size() const override;
  int64_t dim() const override;
  bool frames_input() const override;
  DomainKind kind() const override;
  int tta_views() const override;
  uint64_t view_seed() const override;
  std::string source() const override;
  void encode(int64_t n, const float* x, float* out) override;

  const std::string& domain() const;
  const std::vector<std::string>& classes() const;  // the C classes it learnt
  const std::string& arch() const;
  // The backbone weights its frozen stages load ("default": the arch's file in $DUET_SHARED).
  const std::string& weights() const;
  // x [n, 3, S, S] -> emb [n, dim()], class logits [n, C] and the frozen backbone's pooled
  // features [n, frozen_dim()] (any nullptr: not wanted; frozen only from an encoder opened with
  // frozen_features); one image at a time, so a row does not depend on which images share its call.
  void encode_logits(int64_t n, const float* x, float* emb, float* logits, float* frozen = nullptr);
  int64_t frozen_dim() const;

 private:
  struct Impl;  // the LibTorch modules
  explicit PhaseOneEncoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend std::unique_ptr<PhaseOneEncoder> open_encoder(const std::string&, int, const std::string&,
                                                       bool);
  friend void encode_members(int64_t, const std::vector<MemberRows>&);
};

// --- Phase II: the mapper file -------------------------------------------------------------------

class Mapper {
 public:
  virtual ~Mapper() = default;
  virtual int64_t in_dim() const = 0;
  virtual int64_t code_dim() const = 0;
  // The domains with a branch: the query domains in training order, the gallery domain last.
  virtual const std::vector<std::string>& domains() const = 0;
  virtual const std::string& gallery_domain() const = 0;
  // x [N, in_dim] of `domain` through its branch -> codes [N, code_dim]; Error naming the mapper's
  // domains when it has none for `domain`.
  virtual Matrix map(const std::string& domain, const Matrix& x) const = 0;
  // The probability that a pair whose codes are d apart shows the same class is
  // sigmoid(prob_a() - prob_b() * d) (fitted after training; the ranking reads a and b).
  virtual double prob_a() const = 0;
  virtual double prob_b() const = 0;
};

// Reads a mapper file; Error naming it when it is missing, damaged or of another format.
std::unique_ptr<Mapper> open_mapper(const std::string& file);

// --- the bridge into the gallery's frozen features (duet/bridge.h) -----------------------------

class Bridge {
 public:
  Bridge(std::string gallery_domain, Matrix mu_gallery);
  // A query domain's map: mu_q [1, F], W [F + D, F], c [1, F].
  void add_query(const std::string& domain, Matrix mu, Matrix w, Matrix c);

  const std::string& gallery_domain() const { return gallery_; }
  int64_t dim() const { return mu_g_.cols; }  // F
  std::vector<std::string> domains() const;   // the gallery's, then the query domains'
  // frozen [n, F] and emb [n, D] of `domain` -> [n, F] unit rows (emb unused for the gallery's).
  Matrix map(const std::string& domain, const Matrix& frozen, const Matrix& emb) const;
  // A query domain's rows as its map reads them, [unit(frozen - mu), unit(emb)]: what W
  // multiplies, and so what train_bridge fits W on.
  static Matrix query_input(const Matrix& frozen, const Matrix& emb, const Matrix& mu);

  void save(const std::string& file) const;  // atomically

 private:
  struct Query {
    Matrix mu, w, c;
  };
  std::string gallery_;
  Matrix mu_g_;
  std::map<std::string, Query> q_;
};

// Reads a bridge file; Error naming it when it is missing, damaged or of another format.
std::unique_ptr<Bridge> open_bridge(const std::string& file);

}  // namespace duet
