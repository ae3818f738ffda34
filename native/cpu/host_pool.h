// A caching allocator for host buffers.
//
// Cost model: a training step allocates and frees the same few hundred activation-sized
// buffers (megabytes each) every iteration. From malloc, such buffers come from fresh mmap'd
// pages, and every first touch of a page is a fault that zeroes 4 KiB: hundreds of thousands of
// faults per ResNet-20 step, a third of its time. Freed blocks are therefore kept by size and
// handed out again; the cache is bounded and can be emptied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace cr::cpu {

class HostPool {
 public:
  static HostPool& Instance();

  // 64-byte aligned memory of at least `bytes`; throws a NativeError when the host is out of it.
  void* Acquire(size_t bytes);
  // Returns memory from Acquire(bytes) to the cache (or to the system past the cache's bound).
  void Release(void* p, size_t bytes);
  // Frees every cached block.
  void Clear();
  int64_t CachedBytes();

 private:
  static size_t SizeClass(size_t bytes);

  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

}  // namespace cr::cpu
