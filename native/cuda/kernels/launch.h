// Host entry points of the CUDA kernels (kernels/*.cu). Each launches on `stream` and returns
// the launch status, which the caller checks with CR_CUDA so that the error names its op.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "../../common/storage.h"
#include "math.cuh"

namespace cr::cuda::kernels {

// Where a kernel records the first out-of-range label it meets; read at the next sync point.
struct LabelError {
  int set, op, label, classes;
  long long row, rows;
};

// The element-wise kernels read and write `type` (float32, bfloat16 or float16) and compute in
// float; they index buffers linearly, so any layout works as long as all operands share it.
cudaError_t Relu(DType type, const void* x, void* y, int64_t n, cudaStream_t stream);
cudaError_t ReluBackward(DType type, const void* y, const void* dy, void* dx, int64_t n, cudaStream_t stream);
cudaError_t Scale(DType type, const void* x, float alpha, void* y, int64_t n, cudaStream_t stream);
cudaError_t Add(DType type, const void* a, const void* b, void* y, int64_t n, bool relu, cudaStream_t stream);
// Writes the 32-bit pattern `bits` (a float's or an int's) n times.
cudaError_t Fill(void* p, uint32_t bits, int64_t n, cudaStream_t stream);
// Writes the 16-bit pattern `bits` (a half-precision value's) n times.
cudaError_t Fill16(void* p, uint16_t bits, int64_t n, cudaStream_t stream);
// dst, n elements of dst_type in layout `to`, from src's values of the same logical indices,
// converted from src_type (math::ConvertAt): casts, layout changes and reshapes in one pass.
cudaError_t Convert(const void* src, DType src_type, const math::Layout& from, void* dst, DType dst_type,
                    const math::Layout& to, int64_t n, cudaStream_t stream);
// Adds to *count the number of infinite or NaN values among x's n values of `type`.
cudaError_t CountNonFinite(DType type, const void* x, int64_t n, unsigned long long* count, cudaStream_t stream);
// *out = float(*count), on the device.
cudaError_t CountToFloat(const unsigned long long* count, float* out, cudaStream_t stream);

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

// Pooling backwards of geometry g (channels-last where g.nhwc) over n = N·C·h·w input elements
// of `type`: dx, every element written. Max pooling reads the forward's input x.
cudaError_t MaxPoolBackward(DType type, const void* x, const void* dy, void* dx, int64_t n, const math::PoolPlane& g,
                            cudaStream_t stream);
cudaError_t AvgPoolBackward(DType type, const void* dy, void* dx, int64_t n, const math::PoolPlane& g,
                            cudaStream_t stream);

}  // namespace cr::cuda::kernels
