// ReLU, its backward, scaling, addition and fused add + ReLU, fills, conversions and the
// non-finite count: memory-bound one-pass kernels over contiguous buffers of float32 or half
// precision (computed in float, math::Load / math::Store).
#include "common.cuh"
#include "launch.h"

namespace cr::cuda::kernels {

namespace {

template <typename T>
cudaError_t ReluT(const void* x, void* y, int64_t n, cudaStream_t stream) {
  const T* a = static_cast<const T*>(x);
  T* out = static_cast<T*>(y);
  return Map(n, stream, [=] __device__(int64_t i) { math::ReluAt(a, out, i); });
}

template <typename T>
cudaError_t ReluBackwardT(const void* y, const void* dy, void* dx, int64_t n, cudaStream_t stream) {
  const T* fwd = static_cast<const T*>(y);
  const T* grad = static_cast<const T*>(dy);
  T* out = static_cast<T*>(dx);
  return Map(n, stream, [=] __device__(int64_t i) { math::ReluBackwardAt(fwd, grad, out, i); });
}

template <typename T>
cudaError_t ScaleT(const void* x, float alpha, void* y, int64_t n, cudaStream_t stream) {
  const T* a = static_cast<const T*>(x);
  T* out = static_cast<T*>(y);
  return Map(n, stream, [=] __device__(int64_t i) { math::ScaleAt(a, alpha, out, i); });
}

template <typename T>
cudaError_t AddT(const void* a, const void* b, void* y, int64_t n, bool relu, cudaStream_t stream) {
  const T* p = static_cast<const T*>(a);
  const T* q = static_cast<const T*>(b);
  T* out = static_cast<T*>(y);
  return Map(n, stream, [=] __device__(int64_t i) { math::AddAt(p, q, relu, out, i); });
}

template <typename S, typename D>
cudaError_t ConvertT(const void* src, const math::Layout& from, void* dst, const math::Layout& to, int64_t n,
                     cudaStream_t stream) {
  const S* s = static_cast<const S*>(src);
  D* d = static_cast<D*>(dst);
  return Map(n, stream, [=] __device__(int64_t j) { math::ConvertAt(s, from, d, to, j); });
}

// Non-finite values are rare (a gradient scaler's overflow), so the atomics almost never run.
template <typename T>
cudaError_t CountNonFiniteT(const void* x, int64_t n, unsigned long long* count, cudaStream_t stream) {
  const T* a = static_cast<const T*>(x);
  return Map(n, stream, [=] __device__(int64_t i) {
    if (math::NonFinite(math::Load(a[i]))) atomicAdd(count, 1ull);
  });
}

__global__ void CountToFloatKernel(const unsigned long long* count, float* out) { *out = float(*count); }

}  // namespace

cudaError_t Relu(DType type, const void* x, void* y, int64_t n, cudaStream_t stream) {
  return WithFloatType(type, [&](auto t) { return ReluT<decltype(t)>(x, y, n, stream); });
}

cudaError_t ReluBackward(DType type, const void* y, const void* dy, void* dx, int64_t n, cudaStream_t stream) {
  return WithFloatType(type, [&](auto t) { return ReluBackwardT<decltype(t)>(y, dy, dx, n, stream); });
}

cudaError_t Scale(DType type, const void* x, float alpha, void* y, int64_t n, cudaStream_t stream) {
  return WithFloatType(type, [&](auto t) { return ScaleT<decltype(t)>(x, alpha, y, n, stream); });
}

cudaError_t Add(DType type, const void* a, const void* b, void* y, int64_t n, bool relu, cudaStream_t stream) {
  return WithFloatType(type, [&](auto t) { return AddT<decltype(t)>(a, b, y, n, relu, stream); });
}

cudaError_t Fill(void* p, uint32_t bits, int64_t n, cudaStream_t stream) {
  uint32_t* words = static_cast<uint32_t*>(p);
  return Map(n, stream, [=] __device__(int64_t i) { words[i] = bits; });
}

cudaError_t Fill16(void* p, uint16_t bits, int64_t n, cudaStream_t stream) {
  uint16_t* halves = static_cast<uint16_t*>(p);
  return Map(n, stream, [=] __device__(int64_t i) { halves[i] = bits; });
}

cudaError_t Convert(const void* src, DType src_type, const math::Layout& from, void* dst, DType dst_type,
                    const math::Layout& to, int64_t n, cudaStream_t stream) {
  return WithFloatType(src_type, [&](auto s) {
    return WithFloatType(dst_type, [&](auto d) { return ConvertT<decltype(s), decltype(d)>(src, from, dst, to, n, stream); });
  });
}

cudaError_t CountNonFinite(DType type, const void* x, int64_t n, unsigned long long* count, cudaStream_t stream) {
  return WithFloatType(type, [&](auto t) { return CountNonFiniteT<decltype(t)>(x, n, count, stream); });
}

cudaError_t CountToFloat(const unsigned long long* count, float* out, cudaStream_t stream) {
  CountToFloatKernel<<<1, 1, 0, stream>>>(count, out);
  return cudaGetLastError();
}

}  // namespace cr::cuda::kernels
