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

// One block of kThreads (a power of two: the tree sum halves it).
__global__ void XentForward(const float* logits, const int32_t* labels, int64_t n, int64_t k, double smoothing,
                            float* probs, float* loss, int* error) {
  __shared__ double partial[kThreads];
  partial[threadIdx.x] = math::SoftmaxXentRows(logits, labels, n, k, smoothing, probs, threadIdx.x, kThreads,
                                               [=](int64_t row, int32_t label) { RecordBadLabel(error, 0, row, label, n, k); });
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (int(threadIdx.x) < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) *loss = float(partial[0] / double(n));
}

}  // namespace

cudaError_t SoftmaxXentForward(const float* logits, const int32_t* labels, int64_t n, int64_t k, double smoothing,
                               float* probs, float* loss, int* error, cudaStream_t stream) {
  XentForward<<<1, kThreads, 0, stream>>>(logits, labels, n, k, smoothing, probs, loss, error);
  return cudaGetLastError();
}

cudaError_t SoftmaxXentBackward(const float* probs, const int32_t* labels, int64_t n, int64_t k, double smoothing,
                                const float* dloss, float* dx, int* error, cudaStream_t stream) {
  return Map(n * k, stream, [=] __device__(int64_t i) {
    // dloss lives on the device (the loss's gradient, made by earlier ops): read per thread.
    const double scale = double(*dloss) / double(n);
    math::SoftmaxXentGradAt(probs, labels, k, smoothing, scale, dx, i,
                            [=](int64_t row, int32_t label) { RecordBadLabel(error, 1, row, label, n, k); });
  });
}

}  // namespace cr::cuda::kernels
