// src/backbone/nets.h — the CNN backbones as LibTorch modules (internal: includes torch).
//
// MobileNetV1/V2 follow the TFLite graphs exactly, batch norm already folded into conv biases and
// TF 'SAME' padding (stride-2 convs pad one pixel at the bottom/right only), so that imported
// weights reproduce the TFLite network. VGG16 follows torchvision's parameter names so that a
// TorchScript export of torchvision's vgg16 loads by name.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace duet {

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

// Common face of every backbone.
struct BackboneNetImpl : torch::nn::Module {
  std::string arch;
  int input_size = 224;   // S
  int feature_dim = 0;    // D of pooled features
  int num_classes = 0;    // ImageNet head width (1001 for the TFLite MobileNets)
  // x [N, 3, S, S] -> pooled features [N, D]
  virtual torch::Tensor features(torch::Tensor x) = 0;
  // pooled features [N, D] -> ImageNet logits [N, num_classes]
  virtual torch::Tensor logits(torch::Tensor f) = 0;
  // Weight-bearing layers in execution order (for import and for partial fine-tuning).
  virtual std::vector<TfConv> layers() { return {}; }
  // Parameters of the last `n` stages, for fine-tuning only the top of the network.
  virtual std::vector<torch::Tensor> top_parameters(int n) = 0;
};

// Builds the architecture with random weights; throws Error on an unknown name.
std::shared_ptr<BackboneNetImpl> make_backbone(const std::string& arch);
// Loads weights: .tflite for MobileNets (TFLite import), TorchScript otherwise (by parameter name).
void load_backbone_weights(BackboneNetImpl& net, const std::string& path);
// make + load (+ eval mode); weights "" keeps random init (VGG16) or looks in the shared folder.
std::shared_ptr<BackboneNetImpl> open_backbone_net(const std::string& arch, const std::string& weights);

}  // namespace duet
