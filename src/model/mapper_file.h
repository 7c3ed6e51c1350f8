// src/model/mapper_file.h — a Phase II mapper file (internal: includes torch): the branch that
// train_mapper trains and writes (phase2/mapper.cpp) and open_mapper reads
// (model/mapper_infer.cpp). The file holds one branch per domain, the query domains in order and
// the gallery domain last, branch b's parameters as "b<b>.<name>" (with shared branches, branch 0's
// only).
#pragma once

#include <torch/torch.h>

namespace duet {

constexpr const char* kMapperFormat = "duet-mapper-v2";  // v2: one branch per named domain

struct BranchImpl : torch::nn::Module {
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  bool normalize = false;  // inputs to unit length first (MapperOptions::normalize)
  BranchImpl(int in, int hidden, int code, bool norm) : normalize(norm) {
    fc1 = register_module("fc1", torch::nn::Linear(in, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, code));
  }
  torch::Tensor forward(torch::Tensor x) {  // [N, in] -> [N, code]
    namespace F = torch::nn::functional;
    if (normalize) x = F::normalize(x, F::NormalizeFuncOptions().dim(1));
    return fc2(torch::relu(fc1(x)));
  }
};
TORCH_MODULE(Branch);

}  // namespace duet
