// A device or host allocation owned by a backend, shared by the JS handle that names it and by
// every queued task that reads or writes it. Whoever drops the last reference frees it: the JS
// thread when a tensor is disposed with nothing queued on it, otherwise the worker thread once
// the last task using it has run. That is what makes dispose() safe while work is in flight.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace cr {

enum class DType { kFloat32 = 0, kInt32 = 1 };

// The most elements a buffer may have: 2^34 (64 GiB of float32) is far beyond any host or GPU
// this runs on, and it keeps every byte count a library computes from the dims below overflow.
constexpr int64_t kMaxNumel = int64_t(1) << 34;

const char* DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

// Buffers are counted, and capped, per memory domain: one per device (Backend::MemoryDomain),
// shared by every addon instance of the process that uses that device, as worker threads share it.
constexpr int kMemoryDomains = 64;

struct MemoryStats {
  int64_t live_buffers;
  int64_t live_bytes;
  int64_t peak_bytes;
  // 0: no limit.
  int64_t limit_bytes;
};

class Storage {
 public:
  // Throws a NativeError (ERR_INVALID_ARG) for dims with a non-positive entry or more than
  // kMaxNumel elements: the backstop behind every entry point's own argument checks. `domain` is
  // in [0, kMemoryDomains).
  Storage(std::vector<int64_t> dims, DType dtype, size_t bytes, int domain = 0);
  virtual ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  // Logical NCHW dimensions; the physical layout is the backend's business.
  const std::vector<int64_t> dims;
  const DType dtype;
  // Bytes actually allocated (a blocked layout may pad).
  const size_t bytes;
  const int domain;

  int64_t Numel() const;
  std::string ShapeString() const;

  static MemoryStats Stats(int domain);
  // Caps the bytes that live storages of a domain may hold together (0 removes the cap). A
  // storage that would exceed it is refused in its constructor, before any memory is taken,
  // with a NativeError ERR_MEMORY_LIMIT naming the current op: a cap the user sets must fail
  // as an error they can catch, where the device or host running out might not.
  static void SetLimit(int64_t bytes, int domain);
};

using StoragePtr = std::shared_ptr<Storage>;

std::string ShapeString(const std::vector<int64_t>& dims);

// An op's name with the shapes of its inputs, for task names and error messages:
// "conv2d [8, 3, 32, 32] [16, 3, 3, 3]". Null inputs are skipped.
std::string Describe(const char* op, std::initializer_list<const Storage*> inputs);

}  // namespace cr
