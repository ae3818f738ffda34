// The SGD step over every parameter, in chunks of tensors per launch (common.cuh, PlanSgd).
#include <algorithm>

#include "common.cuh"
#include "launch.h"

namespace cr::cuda::kernels {

namespace {

__global__ void SgdKernel(SgdChunk chunk, math::SgdHyper h, const float* lr) {
  if (lr) h.lr = *lr;
  SgdThread(chunk, blockIdx.y, blockIdx.x, gridDim.x, threadIdx.x, h);
}

}  // namespace

std::vector<SgdLaunch> PlanSgd(const math::SgdTensor* tensors, size_t count) {
  std::vector<SgdLaunch> launches;
  for (size_t start = 0; start < count; start += kSgdChunk) {
    SgdLaunch l{};
    l.tensors = unsigned(std::min<size_t>(kSgdChunk, count - start));
    int64_t largest = 1;
    for (unsigned i = 0; i < l.tensors; ++i) {
      l.chunk.t[i] = tensors[start + i];
      largest = std::max(largest, l.chunk.t[i].n);
    }
    // Capped lower than the element-wise kernels: the grid is multiplied by the tensor count.
    l.blocks = std::min(Blocks(largest), 1024u);
    launches.push_back(l);
  }
  return launches;
}

cudaError_t SgdStep(const math::SgdTensor* tensors, size_t count, const math::SgdHyper& h, const float* lr,
                    cudaStream_t stream) {
  for (const SgdLaunch& l : PlanSgd(tensors, count)) {
    SgdKernel<<<dim3(l.blocks, l.tensors), kThreads, 0, stream>>>(l.chunk, h, lr);
    const cudaError_t st = cudaGetLastError();
    if (st != cudaSuccess) return st;
  }
  return cudaSuccess;
}

}  // namespace cr::cuda::kernels
