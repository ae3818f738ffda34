// Launch geometry shared by the kernels, and by their emulation on the CPU (host_checks.cc), which
// runs the same per-thread code over the same grid so that a machine without a GPU can test the
// indexing, the launch sizes and the reductions.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../../common/storage.h"
#include "math.cuh"

namespace cr::cuda::kernels {

constexpr int kThreads = 256;

// Enough blocks to cover n with grid-stride loops, capped so that a huge tensor does not launch
// millions of blocks (each thread then loops).
inline unsigned Blocks(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  if (b > 65535) b = 65535;
  return unsigned(b < 1 ? 1 : b);
}

// One thread's share of a grid-stride loop over [0, n): thread `thread` of block `block`, in a
// grid of `blocks` blocks of kThreads, visits block·kThreads + thread, then every
// blocks·kThreads-th index after it.
template <typename F>
CR_HD void GridStride(int64_t n, int64_t block, int64_t blocks, int64_t thread, F&& f) {
  for (int64_t i = block * kThreads + thread; i < n; i += blocks * kThreads) f(i);
}

#ifdef __CUDACC__
template <typename F>
__global__ void MapKernel(int64_t n, F f) {
  GridStride(n, blockIdx.x, gridDim.x, threadIdx.x, f);
}

// f(i) for every i in [0, n), as a grid-stride launch on `stream`; returns the launch status.
template <typename F>
cudaError_t Map(int64_t n, cudaStream_t stream, F f) {
  MapKernel<<<Blocks(n), kThreads, 0, stream>>>(n, f);
  return cudaGetLastError();
}

// f(T{}) with T the kernels' element type of `type` (math::BFloat16 ...): the one switch from a
// buffer's type to a kernel's template argument. int32 has no floating kernels.
template <typename F>
cudaError_t WithFloatType(DType type, F&& f) {
  switch (type) {
    case DType::kFloat32:
      return f(float{});
    case DType::kBFloat16:
      return f(math::BFloat16{});
    case DType::kFloat16:
      return f(math::Float16{});
    case DType::kInt32:
      break;
  }
  return cudaErrorInvalidValue;
}
#endif

// The SGD step over every parameter. A ResNet-50 has 161 parameters, most of them batch-norm
// vectors of a few hundred elements: one launch per parameter would cost more in launch overhead
// than in arithmetic. The tensors travel in the kernel's parameters, kSgdChunk per launch;
// blockIdx.y picks the tensor, blockIdx.x strides over its elements. 48 tensors of 32 bytes keep
// the parameter block well under the 4 KiB every GPU accepts.
constexpr int kSgdChunk = 48;

struct SgdChunk {
  math::SgdTensor t[kSgdChunk];
};

struct SgdLaunch {
  SgdChunk chunk;
  // Grid: blocks x tensors, of kThreads each.
  unsigned blocks, tensors;
};

// The launches of one step over `count` tensors, in order.
std::vector<SgdLaunch> PlanSgd(const math::SgdTensor* tensors, size_t count);

// Thread `thread` of block (block, tensor) of a launch of `blocks` x tensors.
CR_HD void SgdThread(const SgdChunk& chunk, unsigned tensor, int64_t block, int64_t blocks, int64_t thread,
                     const math::SgdHyper& h) {
  const math::SgdTensor& t = chunk.t[tensor];
  GridStride(t.n, block, blocks, thread,
             [&](int64_t i) { math::SgdElement(t.param + i, t.grad[i], t.buf ? t.buf + i : nullptr, h); });
}

}  // namespace cr::cuda::kernels
