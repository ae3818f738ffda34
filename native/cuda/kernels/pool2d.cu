// The backwards of max and average pooling, one thread per input element gathering from the
// windows that cover it: deterministic (no atomics), and for max pooling the gradient goes to the
// window's first maximum, PyTorch's rule, which cuDNN documents for neither of its max modes.
// Plain NCHW float32 or channels-last half precision (math::PoolElementAt).
#include "common.cuh"
#include "launch.h"

namespace cr::cuda::kernels {

namespace {

template <typename T>
cudaError_t MaxPoolBackwardT(const void* x, const void* dy, void* dx, int64_t n, const math::PoolPlane& g,
                             cudaStream_t stream) {
  const T* in = static_cast<const T*>(x);
  const T* grad = static_cast<const T*>(dy);
  T* out = static_cast<T*>(dx);
  return Map(n, stream, [=] __device__(int64_t i) { math::MaxPoolBackwardAt(in, grad, out, g, i); });
}

template <typename T>
cudaError_t AvgPoolBackwardT(const void* dy, void* dx, int64_t n, const math::PoolPlane& g, cudaStream_t stream) {
  const T* grad = static_cast<const T*>(dy);
  T* out = static_cast<T*>(dx);
  return Map(n, stream, [=] __device__(int64_t i) { math::AvgPoolBackwardAt(grad, out, g, i); });
}

}  // namespace

cudaError_t MaxPoolBackward(DType type, const void* x, const void* dy, void* dx, int64_t n, const math::PoolPlane& g,
                            cudaStream_t stream) {
  return WithFloatType(type, [&](auto t) { return MaxPoolBackwardT<decltype(t)>(x, dy, dx, n, g, stream); });
}

cudaError_t AvgPoolBackward(DType type, const void* dy, void* dx, int64_t n, const math::PoolPlane& g,
                            cudaStream_t stream) {
  return WithFloatType(type, [&](auto t) { return AvgPoolBackwardT<decltype(t)>(dy, dx, n, g, stream); });
}

}  // namespace cr::cuda::kernels
