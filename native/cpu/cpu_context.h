// State of the oneDNN backend and the helpers every CPU op shares.
//
// Cost model: creating a oneDNN primitive JIT-compiles code (up to milliseconds), executing one
// costs microseconds of overhead. Primitives are therefore created on the JS thread when an op
// is first enqueued for a shape, cached by a key of op, shapes, physical layouts and
// parameters, and executed on the worker thread. Activations keep the blocked layout the
// convolution chose (nChw8c/nChw16c) from op to op; a reorder happens only when an op needs
// another layout, at upload and at readback.
#pragma once

#include <napi.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "../common/args.h"
#include "../common/checks.h"
#include "../common/context.h"
#include "../common/errors.h"
#include "../common/storage.h"

namespace cr::cpu {

using dnnl::memory;
using Desc = memory::desc;

// Checks a oneDNN call: a dnnl::error becomes a NativeError naming the op, the call, the place
// and oneDNN's status.
#define CR_DNNL(expr)                                                   \
  ([&]() -> decltype(auto) {                                            \
    try {                                                               \
      return (expr);                                                    \
    } catch (const dnnl::error& cr_dnnl_err) {                          \
      ::cr::cpu::ThrowDnnl(cr_dnnl_err, #expr, __FILE__, __LINE__);     \
    }                                                                   \
  }())

[[noreturn]] void ThrowDnnl(const dnnl::error& err, const char* call, const char* file, int line);

class CpuStorage : public Storage {
 public:
  CpuStorage(std::vector<int64_t> dims, DType dtype, const Desc& md);
  ~CpuStorage() override;
  const Desc md;
  void* const data;
};

using CpuStoragePtr = std::shared_ptr<CpuStorage>;

class CpuContext : public CommonContext {
 public:
  CpuContext();
  ~CpuContext() override;

  dnnl::engine engine;
  dnnl::stream stream;

  // Cached primitives and whatever goes with them, by key. Touched on the JS thread only.
  template <typename T, typename Build>
  std::shared_ptr<T> Cached(const std::string& key, Build&& build) {
    auto it = cache_.find(key);
    if (it != cache_.end()) return std::static_pointer_cast<T>(it->second);
    std::shared_ptr<T> made = std::make_shared<T>(build());
    cache_.emplace(key, made);
    return made;
  }
  size_t CacheSize() const { return cache_.size(); }

  // One scratchpad for every primitive, grown as needed, touched only by the worker. oneDNN's
  // default (library-owned) scratchpad is tied to the thread that created the primitive, which
  // here is the JS thread, not the worker that executes it.
  void* scratch = nullptr;
  size_t scratch_bytes = 0;

 private:
  std::unordered_map<std::string, std::shared_ptr<void>> cache_;
};

CpuContext& Ctx(Napi::Env env);

// Attributes every primitive is created with (user-managed scratchpad, see CpuContext).
dnnl::primitive_attr Attr();
// Executes a primitive on the worker with the shared scratchpad.
void Execute(CpuContext& ctx, const dnnl::primitive& prim, std::unordered_map<int, memory> args);

// A memory object over a storage, made at execution time (cheap: no allocation).
memory Mem(CpuContext& ctx, const CpuStorage& s);
memory Mem(CpuContext& ctx, const CpuStorage& s, const Desc& as);

CpuStoragePtr Alloc(const std::vector<int64_t>& dims, DType dtype, const Desc& md);
CpuStoragePtr Arg(Napi::Env env, Napi::Value v, const char* what);
CpuStoragePtr OptionalArg(Napi::Env env, Napi::Value v, const char* what);

memory::dims Dims(const std::vector<int64_t>& d);
// The plain row-major (NCHW for rank 4) descriptor of these dims.
Desc PlainDesc(const std::vector<int64_t>& dims, DType dtype);
memory::data_type DnnlType(DType dtype);

// Appends a descriptor's identity (type, dims, blocking) to a cache key.
void AppendDesc(std::string& key, const Desc& md);
void AppendInts(std::string& key, const std::vector<int64_t>& v);

// `s` in layout `want`: `s` itself if it already is, else a new storage filled by an enqueued
// reorder. `view`, when given, is how to read `s`'s memory (a plain 4-D weight read as 5-D
// grouped weights, say); it must describe the same bytes.
CpuStoragePtr InLayout(CpuContext& ctx, const CpuStoragePtr& s, const Desc& want);
CpuStoragePtr InLayout(CpuContext& ctx, const CpuStoragePtr& s, const Desc& want, const Desc& view);

// Enqueues a reorder of `src` (read as `src_view`) into `dst` (written as `dst_view`).
void EnqueueReorder(CpuContext& ctx, const CpuStoragePtr& src, const Desc& src_view, const CpuStoragePtr& dst,
                    const Desc& dst_view);

}  // namespace cr::cpu
