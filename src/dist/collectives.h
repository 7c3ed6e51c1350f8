// src/dist/collectives.h — the tensor collectives of duet/dist.h (internal: includes torch).
#pragma once

#include <torch/torch.h>

#include <vector>

#include "duet/dist.h"

namespace duet::dist {

// Sums every tensor over the ranks, in place: flattened into buckets of about 16 MiB, one
// all-reduce each (a handful of calls for a whole network's gradients). Undefined tensors
// (a parameter no row of this rank's share reached) count as zeros. World 1: nothing.
void all_reduce_sum(std::vector<torch::Tensor> ts);
// Gradients of `params` summed over the ranks (all_reduce_sum of their .grad()), defining
// the ones that are missing as zeros first.
void all_reduce_grads(const std::vector<torch::Tensor>& params);
// Each rank's share (share(0, n)) of the rows of an [n, ...] tensor, float32: `mine` holds this
// rank's rows; returns all n rows on every rank.
torch::Tensor all_gather_rows(const torch::Tensor& mine, int64_t n);
// The largest absolute difference between any rank's tensors and rank 0's (0 with one rank): the
// ranks of a data-parallel step must hold the same parameters bit for bit. Every rank gets it.
double divergence(const std::vector<torch::Tensor>& ts);

}  // namespace duet::dist
