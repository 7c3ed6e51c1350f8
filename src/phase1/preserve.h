// Knowledge preservation (SAKE, Liu et al. ICCV 2019) for Phase I: a second head on the embedding
// learns the frozen backbone's ImageNet distribution of the same view, so the embedding keeps what
// ImageNet knew about classes the task never names. See EncoderTrainOptions::preserve.
#pragma once

#include <torch/torch.h>

namespace duet {

// sum over rows of KL(teacher || softmax(student_logits)): teacher [n, K] rows are distributions,
// student_logits [n, K]. A zero teacher entry adds nothing.
inline torch::Tensor preservation_kl(const torch::Tensor& teacher, const torch::Tensor& student_logits) {
  auto logq = torch::log_softmax(student_logits, 1);
  return (teacher * (torch::log(teacher.clamp_min(1e-12)) - logq)).sum();
}

}  // namespace duet
