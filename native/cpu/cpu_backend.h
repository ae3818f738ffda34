// The oneDNN backend: the Backend interface (native/common/backend.h) on oneDNN primitives. Each
// op's oneDNN calls are in the file named like the front end's (conv2d.cc, batch_norm.cc, ...).
//
// Cost model: creating a oneDNN primitive JIT-compiles code (up to milliseconds), executing one
// costs microseconds of overhead. Primitives are therefore created on the JS thread when an op
// is first enqueued for a shape, cached in the context's KeyedCache by a key of op, shapes,
// physical layouts and parameters, and executed on the worker thread. Activations keep the
// blocked layout the convolution chose (nChw8c/nChw16c) from op to op; a reorder happens only
// when an op needs another layout, at upload and at readback.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "../common/backend.h"
#include "../common/context.h"
#include "../common/errors.h"
#include "../common/keyed_cache.h"
#include "../common/storage.h"
#include "dnnl_compat.h"

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

// A storage handed in by the front end: made by this backend (see backend.h).
inline CpuStoragePtr Cpu(const StoragePtr& s) { return std::static_pointer_cast<CpuStorage>(s); }

CpuStoragePtr Alloc(const std::vector<int64_t>& dims, DType dtype, const Desc& md);

memory::dims Dims(const std::vector<int64_t>& d);
memory::data_type DnnlType(DType dtype);
// The inverse; none for oneDNN types this library has no tensors of.
std::optional<DType> DTypeOf(memory::data_type t);
// The type an op on `dtype` data computes in here. float16 has no oneDNN 2.x CPU kernels (and
// 3.x has them only with AVX512-FP16 or AMX-FP16), so float16 tensors are storage only: every op
// converts its float16 inputs to float32 (the reorder that brings an input into the primitive's
// layout does it), runs the float32 primitive and converts its outputs back. bfloat16 computes
// in bfloat16 (AVX512-BF16).
DType ComputeDType(DType dtype);
// The plain row-major (NCHW for rank 4) descriptor of these dims.
Desc PlainDesc(const std::vector<int64_t>& dims, DType dtype);
// The 4-D layouts oneDNN's CPU primitives produce, most specific first, and which of them `md`
// is (format_tag::undef for none).
memory::format_tag LayoutOf(const Desc& md);
// `md`'s layout with another element type (plain, for a layout LayoutOf does not know).
Desc WithType(const Desc& md, DType dtype);
// Attributes every primitive is created with (a user-managed scratchpad, see CpuBackend).
dnnl::primitive_attr Attr();

// Work that moves fewer bytes than this runs on the worker's thread alone. An OpenMP parallel
// region costs a fork and a barrier: microseconds on an idle machine, but whole scheduler time
// slices (milliseconds) when another process holds a core and the barrier waits for a
// descheduled thread, far more than such work takes on one core (a ResNet-50 training step
// has ~100 weight reorders and casts of this size; measured in docs/benchmarks.md).
constexpr size_t kSmallWorkBytes = size_t(1) << 19;
using compat::AppendDesc;

class GlooGroup;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(Context& ctx);
  ~CpuBackend() override;

  BackendInfo Info() override;
  void SetNumThreads(int threads) override;
  void SetTf32(bool enabled) override;
  void EmptyCache() override;
  int64_t CachedBytes() override;

  StoragePtr Upload(const UploadArgs& a) override;
  StoragePtr Fill(const FillArgs& a) override;
  StoragePtr ZerosLike(const OpArgs& a, const StoragePtr& like) override;
  Completion ReadPlain(const StoragePtr& s, void* dst) override;
  StoragePtr Reshape(const ReshapeArgs& a) override;
  StoragePtr Cast(const CastArgs& a) override;
  StoragePtr CountNonFinite(const CountNonFiniteArgs& a) override;

  StoragePtr Conv2dForward(const Conv2dForwardArgs& a) override;
  StoragePtr Conv2dBackwardData(const Conv2dBackwardDataArgs& a) override;
  Conv2dWeightGrads Conv2dBackwardWeights(const Conv2dBackwardWeightsArgs& a) override;

  BatchNormTrainingOutputs BatchNormForwardTraining(const BatchNormForwardTrainingArgs& a) override;
  StoragePtr BatchNormForwardInference(const BatchNormForwardInferenceArgs& a) override;
  BatchNormGrads BatchNormBackward(const BatchNormBackwardArgs& a) override;

  StoragePtr Elementwise(const ElementwiseArgs& a) override;

  StoragePtr SyncBatchNormStats(const SyncBatchNormStatsArgs& a) override;
  SyncBatchNormGathered SyncBatchNormGather(const SyncBatchNormGatherArgs& a) override;
  SyncBatchNormSums SyncBatchNormBackwardReduce(const SyncBatchNormBackwardReduceArgs& a) override;
  StoragePtr SyncBatchNormBackwardElemt(const SyncBatchNormBackwardElemtArgs& a) override;

  Pool2dOutputs Pool2dForward(const Pool2dForwardArgs& a) override;
  StoragePtr Pool2dBackward(const Pool2dBackwardArgs& a) override;

  StoragePtr LinearForward(const LinearForwardArgs& a) override;
  LinearGrads LinearBackward(const LinearBackwardArgs& a) override;

  SoftmaxCrossEntropyOutputs SoftmaxCrossEntropyForward(const SoftmaxCrossEntropyForwardArgs& a) override;
  StoragePtr SoftmaxCrossEntropyBackward(const SoftmaxCrossEntropyBackwardArgs& a) override;

  void SgdStep(const SgdArgs& a) override;
  void CopyInto(const CopyIntoArgs& a) override;

  std::vector<uint8_t> GroupPrepare(const GroupArgs& a) override;
  void GroupConnect(const std::vector<std::vector<uint8_t>>& published) override;
  void GroupDestroy() override;
  void GroupAbort(const std::string& why) override;
  StartedCollective CollectiveStart(const CollectiveArgs& a) override;
  void CollectiveWait(uint64_t ticket) override;
  // Waits for the collectives in flight on Gloo's thread (collectives.cc).
  Completion Drain() override;

 private:
  // The cached entry for `key` (JS thread only; see the top of this file).
  template <typename T, typename Build>
  std::shared_ptr<T> Cached(const std::string& key, Build&& build) {
    return ctx_.cache.Get<T>(key, std::forward<Build>(build));
  }
  void Push(std::string task, std::function<void()> work) { ctx_.queue.Push(std::move(task), std::move(work)); }

  // Conv2dBackwardData where oneDNN cannot make the primitive (onednn_defects.h).
  StoragePtr StridedPointwiseBackwardData(const Conv2dBackwardDataArgs& a);
  // Executes a primitive (made from `pd`) on the worker with the shared scratchpad.
  void Execute(const dnnl::primitive_desc_base& pd, const dnnl::primitive& prim, std::unordered_map<int, memory> args);
  // A memory object over a storage, made at execution time (cheap: no allocation).
  memory Mem(const CpuStorage& s) const { return memory(s.md, engine_, s.data); }
  memory Mem(const CpuStorage& s, const Desc& as) const { return memory(as, engine_, s.data); }

  // `s` in layout `want`: `s` itself if it already is, else a new storage filled by an enqueued
  // reorder. `view`, when given, is how to read `s`'s memory (a plain 4-D weight read as 5-D
  // grouped weights, say); it must describe the same bytes.
  CpuStoragePtr InLayout(const CpuStoragePtr& s, const Desc& want);
  CpuStoragePtr InLayout(const CpuStoragePtr& s, const Desc& want, const Desc& view);
  // `s` as the type `dtype` is stored in: `s` itself if it already is, else a new storage of its
  // layout filled by an enqueued conversion (an op's float32 result for a float16 output).
  CpuStoragePtr Stored(const CpuStoragePtr& s, DType dtype);
  // `s` in the layout and type an op computes its (float16) values in: `s` itself except for
  // float16, which is converted to float32 (see ComputeDType).
  CpuStoragePtr Computable(const CpuStoragePtr& s);
  // Enqueues a reorder of `src` (read as `src_view`) into `dst` (written as `dst_view`), a task
  // named `op` ("cast" for a conversion between types, so that profiles tell them apart).
  void EnqueueReorder(const CpuStoragePtr& src, const Desc& src_view, const CpuStoragePtr& dst, const Desc& dst_view,
                      const char* op = "reorder");
  // EnqueueReorder's float16 <-> float32 reorder that changes the layout, in two stages through a
  // float32 buffer; false (nothing enqueued) where it does not apply.
  bool EnqueueHalfReorderInStages(const CpuStoragePtr& src, const Desc& src_view, const CpuStoragePtr& dst,
                                  const Desc& dst_view, const char* op);
  // Worker: copies `src` into `dst` in plain row-major order, reordering when `src` is blocked.
  void CopyPlain(const CpuStorage& src, void* dst);
  // `s` in a layout that sync_batch_norm.cc's loops walk (`layout`): its own, or plain NCHW.
  CpuStoragePtr Walkable(const StoragePtr& s, compat::ChannelBlocked& layout);

  dnnl::engine engine_;
  dnnl::stream stream_;
  // One scratchpad for every primitive, grown as needed, touched only by the worker. oneDNN's
  // default (library-owned) scratchpad is tied to the thread that created the primitive, which
  // here is the JS thread, not the worker that executes it.
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;

  // The process group (collectives.cc). Set and cleared on the JS thread, read by the worker
  // when it connects, hence the lock.
  std::shared_ptr<GlooGroup> Group();
  std::mutex group_mu_;
  std::shared_ptr<GlooGroup> group_;
};

}  // namespace cr::cpu
