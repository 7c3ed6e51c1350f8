// Teachers for Phase I. Knowledge preservation (SAKE, Liu et al. ICCV 2019): a second head on the
// embedding learns the frozen backbone's ImageNet distribution of the same view, so the embedding
// keeps what ImageNet knew about classes the task never names (EncoderTrainOptions::preserve).
// Distillation: a query domain's classifier learns the gallery encoder's posterior of each image's
// source image, softened (EncoderTrainOptions::distill).
#pragma once

#include <torch/torch.h>

namespace duet {

// sum over rows of KL(teacher || softmax(student_logits)): teacher [n, K] rows are distributions,
// student_logits [n, K]. A zero teacher entry adds nothing.
inline torch::Tensor preservation_kl(const torch::Tensor& teacher,
                                     const torch::Tensor& student_logits) {
  auto logq = torch::log_softmax(student_logits, 1);
  return (teacher * (torch::log(teacher.clamp_min(1e-12)) - logq)).sum();
}

// A teacher's distributions p [n, C] at temperature t: p^(1/t), each row renormalised (the
// softmax of log p / t). Rows of zeros stay zero: no teacher.
inline torch::Tensor soften(const torch::Tensor& p, double t) {
  auto q = p.clamp_min(1e-12).pow(1.0 / t) * (p.sum(1, true) > 0);
  return q / q.sum(1, true).clamp_min(1e-30);
}

}  // namespace duet
