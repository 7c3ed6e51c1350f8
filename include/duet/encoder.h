// duet/encoder.h — the narrow, torch-free interface every image encoder offers.
//
//   auto enc = duet::open_backbone({.arch = "mobilenet_v2", .weights =
//   "mobilenet_v2_1.0_224_quant.tflite"}); std::vector<float> x(n * 3 * S * S);   // images, CHW,
//   see duet/image.h std::vector<float> y(n * enc->dim()); enc->encode(n, x.data(), y.data());
//
// An Encoder is thread-compatible, not thread-safe: give each thread its own.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "duet/domain.h"

namespace duet {

class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual int input_size() const = 0;  // S: inputs are [n, 3, S, S]
  virtual int64_t dim() const = 0;     // D: outputs are [n, D]
  // x [n, 3, S, S] -> out [n, D]
  virtual void encode(int64_t n, const float* x, float* out) = 0;
  // Whether images are cropped to their strokes (frame_strokes in duet/image.h) before to_chw:
  // true for encoders trained on framed line drawings.
  virtual bool frames_input() const { return false; }
  // The augmentation family of its test-time views (duet/augment.h).
  virtual DomainKind kind() const { return DomainKind::Image; }
  // Test-time views its embeddings average (see duet/augment.h: 1 = the image, 2 = + its mirror,
  // more = + seeded augmentations) and the seed of those augmentations: a Phase I encoder
  // reports how its training run wrote its rows, so `duet embed` reproduces them.
  virtual int tta_views() const { return 1; }
  virtual uint64_t view_seed() const { return 0; }
  // What made these embeddings ("mobilenet_v2:<weights file>"); written into manifests.
  virtual std::string source() const = 0;
};

struct BackboneOptions {
  std::string arch = "mobilenet_v2";  // mobilenet_v2 | mobilenet_v1_025 | vgg16
  std::string weights;        // .tflite (MobileNets) or TorchScript .pt; "" = default/random
  int threads = 0;            // images encoded in parallel, one core each; 0 = all cores
  bool channels_last = true;  // NHWC inputs: faster LibTorch CPU convolutions (bench/embed_speed)
};

// The architectures duet knows, for --help and "did you mean".
std::vector<std::string> backbone_archs();

// The weights file an architecture loads: `weights` itself, or for "" / "default" the arch's
// file in $DUET_SHARED/weights ("" when the arch has none and starts random).
std::string backbone_weights_file(const std::string& arch, const std::string& weights);

// Global-average-pooled backbone features (MobileNetV2: 1280-d) as an Encoder.
std::unique_ptr<Encoder> open_backbone(const BackboneOptions& opt);

// ImageNet classification with the backbone's own classifier.
struct Prediction {
  int index = 0;
  float prob = 0;
  std::string label;
};
class Classifier {
 public:
  virtual ~Classifier() = default;
  virtual int input_size() const = 0;
  // x [n, 3, S, S] -> top-k predictions per image, best first.
  virtual std::vector<std::vector<Prediction>> classify(int64_t n, const float* x, int k) = 0;
};
std::unique_ptr<Classifier> open_classifier(const BackboneOptions& opt,
                                            const std::string& labels_file);

// Sets LibTorch's intra-op thread count for training (0 = all cores); returns the count in effect.
int set_threads(int threads);
// 0 -> the cores (divided among LOCAL_WORLD_SIZE data-parallel workers, duet/dist.h), else threads.
int resolve_threads(int threads);

}  // namespace duet
