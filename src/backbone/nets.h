// src/backbone/nets.h — the CNN backbones as LibTorch modules (internal: includes torch).
//
// MobileNetV1/V2 follow the TFLite graphs exactly, batch norm already folded into conv biases and
// TF 'SAME' padding (stride-2 convs pad one pixel at the bottom/right only), so that imported
// weights reproduce the TFLite network. VGG16 follows torchvision's parameter names so that a
// TorchScript export of torchvision's vgg16 loads by name.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace duet {

// Counts the FLOPs (2 x multiply-adds) of convolutions and linear layers run on this thread
// while it is alive: how the compute ledger estimates a network's cost.
class FlopCount {
 public:
  FlopCount();
  ~FlopCount();
  double flops = 0;
  static void add(double f);  // no-op unless a FlopCount is alive on this thread
};

// A conv with TF 'SAME'/'VALID' padding and an optional fused ReLU6/ReLU.
struct TfConvImpl : torch::nn::Module {
  enum Act { kNone, kRelu, kRelu6 };
  TfConvImpl(int in, int out, int kernel, int stride, int groups, Act act, bool same = true);
  torch::Tensor forward(torch::Tensor x);  // [N, in, H, W] -> [N, out, H', W']
  torch::Tensor weight, bias;              // [out, in/groups, k, k], [out]
  int in, out, kernel, stride, groups;
  Act act;
  bool same;
};
TORCH_MODULE(TfConv);

// Common face of every backbone: a sequence of stages, then a pooling head.
//   features(x) = pool(run_stages(x, 0, num_stages()))
// Splitting at a stage lets Phase I cache the frozen lower stages once and fine-tune the top ones.
struct BackboneNetImpl : torch::nn::Module {
  std::string arch;
  int input_size = 224;  // S
  int feature_dim = 0;   // D of pooled features
  int num_classes = 0;   // ImageNet head width (1001 for the TFLite MobileNets)

  virtual int num_stages() const = 0;
  // Stages [from, to) of x: [N, 3, S, S] (from = 0) or a cached activation -> activation.
  virtual torch::Tensor run_stages(torch::Tensor x, int from, int to) = 0;
  // Last stage's activation -> pooled features [N, D].
  virtual torch::Tensor pool(torch::Tensor x) = 0;
  // Pooled features [N, D] -> ImageNet logits [N, num_classes].
  virtual torch::Tensor logits(torch::Tensor f) = 0;
  // Trainable parameters of stages [from, num_stages()) and of pool().
  virtual std::vector<torch::Tensor> parameters_from(int from) = 0;
  // Weight-bearing layers in execution order (TFLite import).
  virtual std::vector<TfConv> layers() { return {}; }

  torch::Tensor features(torch::Tensor x) { return pool(run_stages(x, 0, num_stages())); }
};

// Runs fn(i) for every i in [0, n) on `workers` threads (no-grad). LibTorch runs single-image,
// single-threaded NHWC inference fastest on this CPU (bench/embed_speed), so duet parallelises
// across images instead of inside ops: intra-op threads are set to 1 for the duration.
void for_each_image(int64_t n, int workers, const std::function<void(int64_t)>& fn);

// Builds the architecture with random weights; throws Error on an unknown name.
std::shared_ptr<BackboneNetImpl> make_backbone(const std::string& arch);
// Loads weights: .tflite for MobileNets (TFLite import), TorchScript otherwise (by parameter name).
void load_backbone_weights(BackboneNetImpl& net, const std::string& path);
// make + load (+ eval mode); weights "" keeps random init (VGG16) or looks in the shared folder.
std::shared_ptr<BackboneNetImpl> open_backbone_net(const std::string& arch,
                                                   const std::string& weights);

}  // namespace duet
