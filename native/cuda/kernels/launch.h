// Host entry points of the CUDA kernels (kernels/*.cu). Each launches on `stream` and returns
// the launch status, which the caller checks with CR_CUDA so that the error names its op.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "math.cuh"

namespace cr::cuda::kernels {

// Where a kernel records the first out-of-range label it meets; read at the next sync point.
struct LabelError {
  int set, op, label, classes;
  long long row, rows;
};

cudaError_t Relu(const float* x, float* y, int64_t n, cudaStream_t stream);
cudaError_t ReluBackward(const float* y, const float* dy, float* dx, int64_t n, cudaStream_t stream);
cudaError_t Scale(const float* x, float alpha, float* y, int64_t n, cudaStream_t stream);
cudaError_t Add(const float* a, const float* b, float* y, int64_t n, bool relu, cudaStream_t stream);
// Writes the 32-bit pattern `bits` (a float's or an int's) n times.
cudaError_t Fill(void* p, uint32_t bits, int64_t n, cudaStream_t stream);

// `error` points at a LabelError: the first out-of-range label is recorded
// there and reported at the next sync point. `loss` receives the mean over rows.
cudaError_t SoftmaxXentForward(const float* logits, const int32_t* labels, int64_t n, int64_t k, double smoothing,
                               float* probs, float* loss, int* error, cudaStream_t stream);
cudaError_t SoftmaxXentBackward(const float* probs, const int32_t* labels, int64_t n, int64_t k, double smoothing,
                                const float* dloss, float* dx, int* error, cudaStream_t stream);

// Updates every tensor in a few launches (one per chunk of tensors, not one per tensor). `lr`, when
// not null, is device memory whose value replaces h.lr, read when the kernels run (a captured
// step's schedule).
cudaError_t SgdStep(const math::SgdTensor* tensors, size_t count, const math::SgdHyper& h, const float* lr,
                    cudaStream_t stream);

// Pooling backwards over `planes` planes (N·C) of geometry g: dx of planes·h·w elements, every one
// written. Max pooling reads the forward's input x.
cudaError_t MaxPoolBackward(const float* x, const float* dy, float* dx, int64_t planes, const math::PoolPlane& g,
                            cudaStream_t stream);
cudaError_t AvgPoolBackward(const float* dy, float* dx, int64_t planes, const math::PoolPlane& g, cudaStream_t stream);

}  // namespace cr::cuda::kernels
