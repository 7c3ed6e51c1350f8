// common/torch_matrix.h — duet's Matrix to a LibTorch tensor and back (internal: includes torch).
#pragma once

#include <torch/torch.h>

#include <algorithm>

#include "duet/embeddings.h"

namespace duet {

// A float32 copy [rows, cols] of m.
inline torch::Tensor to_tensor(const Matrix& m) {
  return torch::from_blob(const_cast<float*>(m.data.data()), {m.rows, m.cols}, torch::kFloat32)
      .clone();
}

// A 2-d tensor's values as float32.
inline Matrix from_tensor(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat32).contiguous();
  Matrix m(c.size(0), c.size(1));
  std::copy(c.data_ptr<float>(), c.data_ptr<float>() + c.numel(), m.data.begin());
  return m;
}

}  // namespace duet
