#include "host_pool.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include <sys/mman.h>

#include "../common/errors.h"
#include "../common/storage.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

namespace cr::cpu {

namespace {

constexpr size_t kAlign = 64;
// Blocks of at least kHugeMin bytes are 2 MiB aligned, whole 2 MiB pages, and advised for
// transparent huge pages (Linux's default THP mode is "madvise"): their first touch then faults
// once per 2 MiB instead of once per 4 KiB. The first training step touches every block fresh:
// ResNet-50 at batch 16 spent most of a 14 s (float32) to 46 s (float16) first step faulting in
// activation-sized buffers, each fault a few microseconds in a virtual machine. Smaller blocks
// keep 4 KiB pages, where rounding to 2 MiB would waste more than it saves.
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHugeMin = size_t(8) << 20;

void* AllocateBlock(size_t size) {
  if (size < kHugeMin) return std::aligned_alloc(kAlign, size);
  void* p = std::aligned_alloc(kHugePage, size);
  // Advice only: a kernel without THP refuses it, and the block works as it is.
  if (p) (void)madvise(p, size, MADV_HUGEPAGE);
  return p;
}
// Idle memory kept for reuse: at least this much, and up to the most that CPU tensors have held
// at once (Storage's peak), so that a training loop whose step needs more than the floor finds
// every block of the last step again. Returning the excess to the system made the next step
// fault in fresh pages: ResNet-50 at batch 16 (float32) took 4.6 s a step with a fixed 2 GiB,
// of which 728,000 page faults a step, and 1.4 s when its step's blocks stay cached.
constexpr size_t kMinCached = size_t(2) << 30;

size_t MaxCached() { return std::max(kMinCached, size_t(std::max<int64_t>(0, Storage::Stats(0).peak_bytes))); }

// CUDNN_RESNET_POISON=1 fills every buffer handed out with NaN bytes, so a kernel that fails to
// write part of its output shows up in tests instead of passing on leftover values.
const bool kPoison = [] {
  const char* v = std::getenv("CUDNN_RESNET_POISON");
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}();

}  // namespace

HostPool& HostPool::Instance() {
  // Never destroyed: buffers may be released by worker threads during process exit.
  static HostPool* pool = new HostPool();
  return *pool;
}

size_t HostPool::SizeClass(size_t bytes) {
  // Small blocks to the alignment, large ones to whole pages, so that shapes that differ by a
  // few bytes share blocks without wasting more than a page.
  const size_t unit = bytes < (size_t(64) << 10) ? kAlign : bytes < kHugeMin ? size_t(4096) : kHugePage;
  return bytes == 0 ? kAlign : (bytes + unit - 1) / unit * unit;
}

void* HostPool::Acquire(size_t bytes) {
  const size_t size = SizeClass(bytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      cached_ -= size;
    }
  }
  if (!p) {
    p = AllocateBlock(size);
    if (!p) {
      // Cached blocks of other sizes may be what stands in the way.
      Clear();
      p = AllocateBlock(size);
    }
    if (!p) Fail("ERR_OUT_OF_MEMORY", "cannot allocate " + std::to_string(bytes) + " bytes of host memory");
  }
  // Under AddressSanitizer (CR_SANITIZE=ON) a cached block is poisoned, and so is the tail of a
  // block past the bytes asked for: a use after release, or an overrun that the size class would
  // otherwise absorb, is reported like one on memory straight from malloc.
  ASAN_UNPOISON_MEMORY_REGION(p, size);
  if (kPoison) std::memset(p, 0xff, size);
  ASAN_POISON_MEMORY_REGION(static_cast<char*>(p) + bytes, size - bytes);
  return p;
}

void HostPool::Release(void* p, size_t bytes) {
  if (!p) return;
  const size_t size = SizeClass(bytes);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_ + size <= MaxCached()) {
      free_[size].push_back(p);
      cached_ += size;
      ASAN_POISON_MEMORY_REGION(p, size);
      return;
    }
  }
  ASAN_UNPOISON_MEMORY_REGION(p, size);
  std::free(p);
}

void HostPool::Clear() {
  std::unordered_map<size_t, std::vector<void*>> blocks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    blocks.swap(free_);
    cached_ = 0;
  }
  for (auto& [size, list] : blocks) {
    for (void* p : list) {
      ASAN_UNPOISON_MEMORY_REGION(p, size);
      std::free(p);
    }
  }
}

int64_t HostPool::CachedBytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return int64_t(cached_);
}

}  // namespace cr::cpu
