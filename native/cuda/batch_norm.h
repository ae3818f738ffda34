// Batch-norm plans, shared by batch_norm.cc and the host-side checks (which run them without a
// GPU).
#pragma once

#include "cuda_backend.h"

namespace cr::cuda {

struct BatchNormPlan {
  // x and y: [N, C, H, W]; stats: cuDNN's derived [1, C, 1, 1] for weight, bias and statistics.
  TensorDesc x, stats;
};

// Host calls only (no GPU).
std::shared_ptr<BatchNormPlan> BuildBatchNormPlan(const std::vector<int64_t>& dims, DType dtype);

}  // namespace cr::cuda
