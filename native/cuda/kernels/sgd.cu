// The SGD step over every parameter. A ResNet-50 has 161 parameters, most of them batch-norm
// vectors of a few hundred elements: one launch per parameter would cost more in launch
// overhead than in arithmetic. The tensors' pointers travel in the kernel's parameters, a chunk
// of them per launch; blockIdx.y picks the tensor, blockIdx.x strides over its elements.
#include <algorithm>

#include "common.cuh"
#include "launch.h"

namespace cr::cuda::kernels {

namespace {

// 48 tensors of 32 bytes keep the parameter block well under the 4 KiB every GPU accepts.
constexpr int kChunk = 48;

struct Chunk {
  SgdTensor t[kChunk];
};

__global__ void SgdKernel(Chunk chunk, math::SgdHyper h) {
  const SgdTensor& t = chunk.t[blockIdx.y];
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < t.n; i += int64_t(gridDim.x) * blockDim.x) {
    math::SgdElement(t.param + i, t.grad[i], t.buf ? t.buf + i : nullptr, h);
  }
}

}  // namespace

cudaError_t SgdStep(const SgdTensor* tensors, size_t count, const math::SgdHyper& h, cudaStream_t stream) {
  for (size_t start = 0; start < count; start += kChunk) {
    const size_t m = std::min<size_t>(kChunk, count - start);
    Chunk chunk{};
    int64_t largest = 1;
    for (size_t i = 0; i < m; ++i) {
      chunk.t[i] = tensors[start + i];
      largest = std::max(largest, chunk.t[i].n);
    }
    // Capped lower than the elementwise kernels: the grid is multiplied by the tensor count.
    const unsigned bx = std::min(Blocks(largest), 1024u);
    SgdKernel<<<dim3(bx, unsigned(m)), kThreads, 0, stream>>>(chunk, h);
    cudaError_t st = cudaGetLastError();
    if (st != cudaSuccess) return st;
  }
  return cudaSuccess;
}

}  // namespace cr::cuda::kernels
