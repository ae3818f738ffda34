// Pooling descriptors, shared by pool2d.cc and the host-side checks.
#pragma once

#include "cuda_backend.h"

namespace cr::cuda {

// Max or average (padded zeros counted: PyTorch's count_include_pad = true) pooling of
// `kernel`, `stride`, `padding`.
void SetPool(const PoolDesc& d, PoolMode mode, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
             const std::vector<int64_t>& padding);

}  // namespace cr::cuda
