#include "storage.h"

#include <cstdio>

#include "errors.h"

namespace cr {

namespace {
struct Counters {
  std::atomic<int64_t> live_buffers{0};
  std::atomic<int64_t> live_bytes{0};
  std::atomic<int64_t> peak_bytes{0};
  std::atomic<int64_t> limit_bytes{0};
};
Counters counters[kMemoryDomains];

std::string MiB(int64_t bytes) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1 << 20));
  return buf;
}
}  // namespace

const char* DTypeName(DType dtype) { return dtype == DType::kFloat32 ? "float32" : "int32"; }

size_t DTypeSize(DType) { return 4; }

Storage::Storage(std::vector<int64_t> dims_, DType dtype_, size_t bytes_, int domain_)
    : dims(std::move(dims_)), dtype(dtype_), bytes(bytes_), domain(domain_) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 1 || n > kMaxNumel / d) Fail("ERR_INVALID_ARG", "cannot allocate a buffer of shape " + cr::ShapeString(dims));
    n *= d;
  }
  Counters& c = counters[domain];
  const int64_t size = static_cast<int64_t>(bytes);
  int64_t now = c.live_bytes.fetch_add(size) + size;
  const int64_t limit = c.limit_bytes.load();
  if (limit > 0 && now > limit) {
    c.live_bytes.fetch_sub(size);
    Fail("ERR_MEMORY_LIMIT", "memory limit exceeded: " + std::to_string(size) + " bytes requested for a " +
                                 DTypeName(dtype) + " " + cr::ShapeString(dims) + " tensor, " + MiB(now - size) +
                                 " in use, limit " + std::to_string(limit) + " bytes (" + MiB(limit) +
                                 "; see setMemoryLimit)");
  }
  c.live_buffers.fetch_add(1);
  int64_t peak = c.peak_bytes.load();
  while (now > peak && !c.peak_bytes.compare_exchange_weak(peak, now)) {
  }
}

Storage::~Storage() {
  Counters& c = counters[domain];
  c.live_buffers.fetch_sub(1);
  c.live_bytes.fetch_sub(static_cast<int64_t>(bytes));
}

int64_t Storage::Numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::string Storage::ShapeString() const { return cr::ShapeString(dims); }

MemoryStats Storage::Stats(int domain) {
  const Counters& c = counters[domain];
  return {c.live_buffers.load(), c.live_bytes.load(), c.peak_bytes.load(), c.limit_bytes.load()};
}

void Storage::SetLimit(int64_t bytes, int domain) { counters[domain].limit_bytes.store(bytes); }

std::string ShapeString(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

std::string Describe(const char* op, std::initializer_list<const Storage*> inputs) {
  std::string s = op;
  for (const Storage* in : inputs) {
    if (!in) continue;
    s += ' ';
    s += in->ShapeString();
  }
  return s;
}

}  // namespace cr
