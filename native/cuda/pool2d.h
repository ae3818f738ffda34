// Pooling plans, shared by pool2d.cc and the host-side checks (which run them without a GPU).
#pragma once

#include "cuda_backend.h"

namespace cr::cuda {

struct PoolPlanKey {
  PoolMode mode;
  PoolGeometry g;
  DType dtype;

  std::string Key() const;
};

struct PoolPlan {
  TensorDesc x, y;
  PoolDesc pool;
};

// The descriptors of `k`: max pooling is CUDNN_POOLING_MAX_DETERMINISTIC, average pooling counts
// padded zeros (PyTorch's count_include_pad = true); NaN propagates. Host calls only (no GPU).
std::shared_ptr<PoolPlan> BuildPoolPlan(const PoolPlanKey& k);

// The geometry of one plane of buffers of `dtype`, as the backward kernels take it.
math::PoolPlane PoolPlaneOf(const PoolGeometry& g, DType dtype);

}  // namespace cr::cuda
