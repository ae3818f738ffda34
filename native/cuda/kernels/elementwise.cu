// ReLU, its backward, scaling, addition and fused add + ReLU: memory-bound one-pass kernels
// over contiguous float32 (the backend keeps activations plain NCHW).
#include "common.cuh"
#include "launch.h"

namespace cr::cuda::kernels {

cudaError_t Relu(const float* x, float* y, int64_t n, cudaStream_t stream) {
  return Map(n, stream, [=] __device__(int64_t i) { y[i] = math::Relu(x[i]); });
}

cudaError_t ReluBackward(const float* y, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
  return Map(n, stream, [=] __device__(int64_t i) { dx[i] = math::ReluGrad(y[i], dy[i]); });
}

cudaError_t Scale(const float* x, float alpha, float* y, int64_t n, cudaStream_t stream) {
  return Map(n, stream, [=] __device__(int64_t i) { y[i] = alpha * x[i]; });
}

cudaError_t Add(const float* a, const float* b, float* y, int64_t n, bool relu, cudaStream_t stream) {
  if (relu) return Map(n, stream, [=] __device__(int64_t i) { y[i] = math::AddRelu(a[i], b[i]); });
  return Map(n, stream, [=] __device__(int64_t i) { y[i] = a[i] + b[i]; });
}

cudaError_t Fill(void* p, uint32_t bits, int64_t n, cudaStream_t stream) {
  uint32_t* words = static_cast<uint32_t*>(p);
  return Map(n, stream, [=] __device__(int64_t i) { words[i] = bits; });
}

}  // namespace cr::cuda::kernels
