#include "pinned_pool.h"

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <new>

#include "cuda_backend.h"

namespace cr::cuda {

PinnedPool& PinnedPool::For(int device) {
  static std::mutex mu;
  static PinnedPool* pools[kMemoryDomains] = {};
  std::lock_guard<std::mutex> lock(mu);
  if (!pools[device]) pools[device] = new PinnedPool(device);
  return *pools[device];
}

PinnedPool::Block PinnedPool::Acquire(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = idle_.find(bytes);
    if (it != idle_.end()) {
      Block b = it->second;
      idle_.erase(it);
      idle_bytes_ -= b.bytes;
      return b;
    }
  }
  // cudaHostAlloc needs a context: the device's own, or the runtime would create one on device 0.
  // Portable: pinned for every context of the process, whichever instance reads it.
  void* p = nullptr;
  if (cudaSetDevice(device_) == cudaSuccess && cudaHostAlloc(&p, bytes, cudaHostAllocPortable) == cudaSuccess) {
    return Block{p, bytes, true};
  }
  // Not an error for the op: the copy falls back to pageable memory. The status must not linger
  // for the next kernel launch to report.
  cudaGetLastError();
  p = std::malloc(bytes);
  if (!p) throw std::bad_alloc();
  return Block{p, bytes, false};
}

void PinnedPool::Release(const Block& b) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.emplace(b.bytes, b);
  idle_bytes_ += b.bytes;
}

void PinnedPool::Trim() {
  std::multimap<size_t, Block> idle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    idle.swap(idle_);
    idle_bytes_ = 0;
  }
  for (const auto& [bytes, b] : idle) Free(b);
}

size_t PinnedPool::IdleBytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_bytes_;
}

void PinnedPool::Free(const Block& b) {
  if (!b.pinned) {
    std::free(b.ptr);
    return;
  }
  cudaError_t st = cudaSetDevice(device_);
  if (st == cudaSuccess) st = cudaFreeHost(b.ptr);
  if (st != cudaSuccess) Warn("cudaFreeHost (emptyCache)", st);
}

}  // namespace cr::cuda
