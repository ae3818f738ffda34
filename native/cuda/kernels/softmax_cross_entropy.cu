// Softmax cross-entropy. The logits of a ResNet are [N, classes] with N a batch and classes
// 10 to 1000: the forward runs one thread per row in a single block, which then sums the row
// losses in a fixed order (a deterministic mean, in double like the CPU backend). That is
// microseconds next to a training step; a warp-per-row version is a later optimisation.
#include "common.cuh"
#include "launch.h"

namespace cr::cuda::kernels {

namespace {

__device__ void RecordBadLabel(int* error, int op, int64_t row, int32_t label, int64_t n, int64_t k) {
  LabelError* e = reinterpret_cast<LabelError*>(error);
  if (atomicCAS(&e->set, 0, 1) == 0) {
    e->op = op;
    e->row = row;
    e->rows = n;
    e->label = label;
    e->classes = int(k);
  }
}

__global__ void XentForward(const float* logits, const int32_t* labels, int64_t n, int64_t k, double smoothing,
                            float* probs, float* loss, int* error) {
  __shared__ double partial[kThreads];
  double total = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const int32_t label = labels[i];
    if (label < 0 || label >= k) {
      RecordBadLabel(error, 0, i, label, n, k);
      continue;
    }
    total += math::SoftmaxXentRow(logits + i * k, k, label, smoothing, probs + i * k);
  }
  partial[threadIdx.x] = total;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (int(threadIdx.x) < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) *loss = float(partial[0] / double(n));
}

__global__ void XentBackward(const float* probs, const int32_t* labels, int64_t n, int64_t k, double smoothing,
                             const float* dloss, float* dx, int* error) {
  const double scale = double(*dloss) / double(n);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n * k; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / k;
    const int32_t label = labels[row];
    if (label < 0 || label >= k) {
      if (i % k == 0) RecordBadLabel(error, 1, row, label, n, k);
      continue;
    }
    dx[i] = math::SoftmaxXentGrad(probs[i], i % k == label, k, smoothing, scale);
  }
}

}  // namespace

cudaError_t SoftmaxXentForward(const float* logits, const int32_t* labels, int64_t n, int64_t k, double smoothing,
                               float* probs, float* loss, int* error, cudaStream_t stream) {
  XentForward<<<1, kThreads, 0, stream>>>(logits, labels, n, k, smoothing, probs, loss, error);
  return cudaGetLastError();
}

cudaError_t SoftmaxXentBackward(const float* probs, const int32_t* labels, int64_t n, int64_t k, double smoothing,
                                const float* dloss, float* dx, int* error, cudaStream_t stream) {
  XentBackward<<<Blocks(n * k), kThreads, 0, stream>>>(probs, labels, n, k, smoothing, dloss, dx, error);
  return cudaGetLastError();
}

}  // namespace cr::cuda::kernels
