// src/model/encoder_file.h — a Phase I encoder file (internal: includes torch): the head and the
// values train_encoder writes (phase1/encoder_train.cpp) and open_encoder reads
// (model/encoder_infer.cpp). The frozen stages are not in it: they come from the backbone weights.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "duet/domain.h"

namespace duet {

constexpr const char* kEncoderFormat = "duet-encoder-v2";  // v2: the domain kind

// FC-hidden (+ReLU, dropout) -> FC-C. embed() is the domain embedding.
struct HeadImpl : torch::nn::Module {
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  HeadImpl(int in, int hidden, int classes) {
    fc1 = register_module("fc1", torch::nn::Linear(in, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, classes));
  }
  torch::Tensor embed(torch::Tensor f) { return torch::relu(fc1(f)); }  // [N, in] -> [N, hidden]
  // [N, in] -> logits [N, C]; in training, the hidden units times `dropout` (dropout_mask's
  // rows of these samples; undefined: none).
  torch::Tensor forward(torch::Tensor f, const torch::Tensor& dropout = {}) {
    auto h = embed(f);
    return fc2(is_training() && dropout.defined() ? h * dropout : h);
  }
};
TORCH_MODULE(Head);

// Everything an encoder file holds besides tensors ("top.<i>": the trained stages' parameters
// from `split` on, "head.<name>": the head's).
struct EncoderMeta {
  std::string arch, weights, domain;
  std::vector<std::string> classes;
  int split = 0, hidden = 0;
  DomainKind kind = DomainKind::Image;
  bool frame = false;  // trained on images cropped to their strokes
  int tta_views = 1;   // views its written embeddings average, drawn with augment_view from seed
  uint64_t seed = 0;   // the seed of its augmented views (the training seed)
};

}  // namespace duet
