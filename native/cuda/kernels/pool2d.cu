// The backwards of max and average pooling, one thread per input element gathering from the
// windows that cover it: deterministic (no atomics), and for max pooling the gradient goes to the
// window's first maximum, PyTorch's rule, which cuDNN documents for neither of its max modes.
#include "common.cuh"
#include "launch.h"

namespace cr::cuda::kernels {

cudaError_t MaxPoolBackward(const float* x, const float* dy, float* dx, int64_t planes, const math::PoolPlane& g,
                            cudaStream_t stream) {
  return Map(planes * g.h * g.w, stream, [=] __device__(int64_t i) { math::MaxPoolBackwardAt(x, dy, dx, g, i); });
}

cudaError_t AvgPoolBackward(const float* dy, float* dx, int64_t planes, const math::PoolPlane& g, cudaStream_t stream) {
  return Map(planes * g.h * g.w, stream, [=] __device__(int64_t i) { math::AvgPoolBackwardAt(dy, dx, g, i); });
}

}  // namespace cr::cuda::kernels
