// Page-locked ("pinned") host memory for the copies between host and GPU, cached by size.
//
// Cost model: a copy from pageable memory is staged by the driver through a pinned buffer of its
// own and returns only once the source has been read; a copy to pageable memory returns only once
// it is complete. From and to pinned memory both copies are asynchronous, so an upload overlaps
// the GPU's work and a readback lets the worker go on launching ops. cudaHostAlloc locks pages
// (about a millisecond per megabyte), so freed blocks are kept for reuse: a training step uploads
// and reads back the same sizes every iteration. emptyCache() frees them.
//
// Where page-locked memory cannot be had (a locked-memory limit), a block is plain heap memory:
// every copy still works, only without the overlap.
//
// One pool per device for the whole process (addon instances and worker threads of a device
// share it), never destroyed: a buffer may be returned from a CUDA host function, which must not
// call CUDA (as a pool's destructor would, to free its blocks), and at process exit CUDA itself
// may already be gone.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>

namespace cr::cuda {

class PinnedPool {
 public:
  // The pool of device `device` (CUDA's numbering; 0 to 63).
  static PinnedPool& For(int device);

  struct Block {
    void* ptr = nullptr;
    size_t bytes = 0;
    bool pinned = false;
  };

  // A block of exactly `bytes`. Any thread. Throws std::bad_alloc when the host is out of memory.
  Block Acquire(size_t bytes);
  // Keeps `b` for reuse. Any thread, including a CUDA host function (it calls no CUDA function).
  void Release(const Block& b);
  // Frees the blocks kept for reuse. Not from a CUDA host function.
  void Trim();
  size_t IdleBytes();

 private:
  explicit PinnedPool(int device) : device_(device) {}
  void Free(const Block& b);

  const int device_;
  std::mutex mu_;
  std::multimap<size_t, Block> idle_;
  size_t idle_bytes_ = 0;
};

// A block of a PinnedPool, returned to it when this goes.
class PinnedBuffer {
 public:
  PinnedBuffer(int device, size_t bytes) : pool_(PinnedPool::For(device)), block_(pool_.Acquire(bytes)) {}
  ~PinnedBuffer() { pool_.Release(block_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* get() const { return block_.ptr; }
  size_t bytes() const { return block_.bytes; }

 private:
  PinnedPool& pool_;
  const PinnedPool::Block block_;
};

}  // namespace cr::cuda
