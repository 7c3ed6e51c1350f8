// duet/phase1.h — Phase I: one encoder per domain, trained alone (no cross-domain pairs).
//
// backbone (ImageNet-pretrained) -> FC-hidden (+ReLU, dropout) -> FC-C over the split's train
// classes. Transfer learning in two stages: (1) backbone frozen, only the head trains, on pooled
// features computed once; (2) the top `finetune_stages` backbone stages unfreeze and train with the
// head. The lower stages stay frozen throughout, so their activations are computed once per
// training view (original, mirror, augmentations) and cached: no image is decoded twice.
// The hidden activations (1024-d by default) are the domain's embedding. The encoder file it
// writes is read by open_encoder (duet/inference.h).
#pragma once

#include <cstdint>
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
  // Images a fine-tuning epoch passes when extra sources (Sample::source) add to the main
  // dataset's: all of the main dataset's, and a fresh draw of the extras' up to this many in all
  // (0: every image every epoch).
  int64_t finetune_samples = 0;
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

}  // namespace duet
