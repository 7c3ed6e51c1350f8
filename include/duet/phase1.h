// duet/phase1.h — Phase I: one encoder per domain, trained alone (no cross-domain pairs).
//
// backbone (ImageNet-pretrained) -> FC-hidden (+ReLU, dropout) -> FC-C over the split's train
// classes. Transfer learning in two stages: (1) backbone frozen, only the head trains, on pooled
// features computed once; (2) the top `finetune_stages` backbone stages unfreeze and train with the
// head. The lower stages stay frozen throughout, so their activations are computed once per
// training view (original, mirror, augmentations) and cached: no image is decoded twice.
// The hidden activations (1024-d by default) are the domain's embedding.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "duet/dataset.h"
#include "duet/domain.h"
#include "duet/embeddings.h"
#include "duet/encoder.h"
#include "duet/ledger.h"

namespace duet {

struct EncoderTrainOptions {
  BackboneOptions backbone;
  int hidden = 1024;  // embedding width
  float dropout = 0.5f;
  double label_smoothing = 0.0;  // cross-entropy target smoothing (regularises small classes)
  double preserve = 0.0;  // knowledge preservation (SAKE, Liu et al. 2019): weight of a second
                          // head on the embedding that learns the frozen backbone's ImageNet
                          // outputs on the same view (KL to its softmax); 0 = off. The second
                          // head trains beside the encoder and is not kept.
  Embeddings teacher;     // with preserve: each sample's ImageNet distribution to keep instead of
                          // its own view's (rows by path, e.g. its source photo's: SAKE's sketch
                          // teacher); samples without a row learn nothing from it. Empty: own view.
  double distill =
      0.0;  // cross-domain distillation: weight of T^2 KL(class_teacher_T || softmax(logits / T))
  double distill_t = 4.0;  // its temperature T
  Embeddings
      class_teacher;  // with distill: each sample's class distribution (rows by path, C columns:
                      // its source image's posterior from the gallery domain's encoder)
  int frozen_epochs = 30;    // stage 1: head only
  int finetune_epochs = 10;  // stage 2: head + top backbone stages
  int finetune_stages =
      3;          // backbone stages unfrozen in stage 2 (MobileNetV2: 2 blocks + last conv)
  int views = 2;  // cached views per training image: original, mirror, then augmentations
  int batch = 64;
  double lr = 1e-3, finetune_lr = 1e-4, weight_decay = 1e-4;
  std::optional<DomainKind>
      kind;               // which augmentations its views get (duet/domain.h); none: detected
  bool frame = false;     // crop each image to its strokes first (frame_strokes): line drawings
  int tta_views = 1;      // views averaged in the embeddings train_encoder writes: 1 = the image,
                          // 2 = + mirror, up to `views` = + the cached augmentations
  uint64_t seed = 0;      // initialisation, minibatch order, dropout, the augmented views
  std::string cache_dir;  // keeps trunk activations between runs ("" = in memory only)
};

struct EpochLog {
  std::string stage;  // "frozen" or "finetune"
  int epoch = 0;
  double loss = 0, train_acc = 0, val_acc = -1;  // val_acc -1: no held-out samples of train classes
};

struct EncoderTrainResult {
  std::string domain;
  std::vector<std::string> classes;
  std::vector<EpochLog> epochs;
  double train_acc = 0, val_acc = -1;
  int64_t train_count = 0, val_count = 0;
  int ranks = 1;  // data-parallel workers (duet/dist.h)
  Ledger ledger;
  std::string to_json() const;
};

// Trains the encoder of `domain` on d's train split (held-out accuracy on the test samples whose
// class was trained) and writes it to out_file. With emb_out, also writes embeddings [N, hidden]
// to emb_out and class posteriors [N, C] to posteriors_path_for(emb_out), for every sample of the
// domain in both splits, straight from the cache.
EncoderTrainResult train_encoder(const Dataset& d, const std::string& domain,
                                 const EncoderTrainOptions& opt, const std::string& out_file,
                                 const std::string& emb_out = "");

// The frozen backbone's pooled features of every sample of `domain` (both splits, rows in
// train_encoder's order), the mean over the first `tta_views` of the views train_encoder caches
// with these options: the ImageNet features the encoder started from (duet/bridge.h). Read from
// the trunk cache (built when missing), so it costs the top stages' passes only.
// imagenet: the backbone's ImageNet distribution of those features instead (softmax of its
// classifier), the teacher of knowledge preservation.
Embeddings frozen_features(const Dataset& d, const std::string& domain,
                           const EncoderTrainOptions& opt, bool imagenet = false);

// "runs/x/sketch.npy" -> "runs/x/sketch.probs.npy"
std::string posteriors_path_for(const std::string& emb_path);

// A trained encoder file: image -> hidden embedding (the Encoder interface), and its classifier.
class PhaseOneEncoder : public Encoder {
 public:
  virtual const std::string& domain() const = 0;
  virtual const std::vector<std::string>& classes() const = 0;  // the C classes it learnt
  virtual const std::string& arch() const = 0;
  // The backbone weights its frozen stages load ("default": the arch's file in $DUET_SHARED).
  virtual const std::string& weights() const = 0;
  // x [n, 3, S, S] -> emb [n, dim()], class logits [n, C] and the frozen backbone's pooled
  // features [n, frozen_dim()] (any nullptr: not wanted; frozen only from an encoder opened with
  // frozen_features); one image at a time, so a row does not depend on which images share its call.
  virtual void encode_logits(int64_t n, const float* x, float* emb, float* logits,
                             float* frozen = nullptr) = 0;
  virtual int64_t frozen_dim() const = 0;
};
// weights: the backbone file to load the frozen stages from instead of the recorded one (a model
// folder carries its own copy). frozen_features: also keep the backbone's own top stages, for
// encode_logits' frozen output (a second copy of them: only when wanted).
std::unique_ptr<PhaseOneEncoder> open_encoder(const std::string& file, int threads = 0,
                                              const std::string& weights = "",
                                              bool frozen_features = false);

// One member's arrays for encode_members: its inputs x [n * views, 3, S, S] (views: its
// tta_views(); image i's at rows [i * views, (i + 1) * views)) and encode_logits' outputs for
// them (nullptr: not wanted).
struct MemberRows {
  const float* x = nullptr;
  float* emb = nullptr;
  float* logits = nullptr;
  float* frozen = nullptr;
};
// encode_logits for the members of one model (encoders from open_encoder) over the same n images.
// Their seedless views (augment.h) are the same inputs for every member, so where a member's
// frozen lower stages are member 0's (arch, weights, split, framing), those views go through
// them once: the outputs are what each member's encode_logits gives, for less work.
void encode_members(const std::vector<PhaseOneEncoder*>& members, int64_t n,
                    const std::vector<MemberRows>& rows);

}  // namespace duet
