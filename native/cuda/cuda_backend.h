// The cuDNN backend: the Backend interface (native/common/backend.h) on cuDNN and a few CUDA
// kernels (kernels/). Each op's cuDNN calls are in the file named like the front end's.
//
// Start-up: nothing touches the GPU when the addon loads. info() only probes (driver, device
// count and properties, the cuDNN library's version), which creates no CUDA context; the device
// (streams, memory pool, cuDNN handle: a CUDA context of ~500 MB and cuDNN's kernels, ~1 GB) is
// set up by the first op. A process that imports the library for the CPU, or for `info`, never
// pays for it.
//
// Devices: one addon instance serves one GPU (useDevice(index) before its first op; 'cuda' is
// device 0, 'cuda:1' is another instance of the addon, loaded by lib/backend/load.ts). Each
// instance has its own queue, streams and caches, so nothing here is shared between devices but
// the process-wide per-device pools (memory counters, pinned staging). CUDA's current device is
// per thread, and the JS thread serves every instance: each call made off the worker sets its
// device first (a call made with none set would create a context on device 0).
//
// Execution: the context's worker thread (native/common's Queue) runs tasks in the order JS
// enqueued them; a task launches work on the backend's CUDA stream and returns without waiting.
// Uploads are copied on a second stream from pinned memory, so that they overlap the compute
// stream's work, which waits for them with an event. A sync point (readback, sync()) only copies
// into pinned memory and records an event on the worker; the wait, and the copy to JS memory, run
// on the context's completion thread (native/common/completions.h), so the worker goes on
// launching the ops queued behind it and the GPU does not run dry at every readback.
//
// Memory: device buffers come from CUDA's stream-ordered allocator (cudaMallocFromPoolAsync on the
// device's default pool, named explicitly: cudaMallocAsync would use the device's current pool,
// which another library in the process may change with cudaDeviceSetMemPool; the pool's release
// threshold keeps freed blocks cached until emptyCache()).
// A buffer's memory is allocated by the first task that uses it, on the worker, not when JS
// enqueues the op: stream-ordered allocation is only correct in stream order, and the worker is
// the one thread that submits to the streams in queue order, so an allocation can reuse a block
// freed by an earlier task without any synchronization. It also means that an out-of-memory is
// an execution failure reported at the next sync point with the op's name, like a cuDNN status.
//
// Layout: the front end sees logical NCHW shapes only. Physically, float32 and int32 buffers
// are plain row-major, as before half precision came; a 4-D bfloat16 or float16 buffer
// (activations, their gradients, and the reduced-precision copies of convolution weights that
// amp.autocast makes, OIHW stored as OHWI) is channels-last, NHWC. The rule depends on nothing
// but the dtype and the rank, so every op knows every operand's layout without a field to keep
// in step: cuDNN's tensor-core convolutions and its fused batch norm (batch_norm.cc) want NHWC
// half precision, and no float32 path changes. The boundary converts (buffers.cc: upload,
// readback, reshape, cast, one kernel, kernels::Convert); element-wise ops see operands of one
// shape and type, hence one layout, and index them linearly.
//
// cuDNN: one handle per backend, used only by the worker (a cuDNN handle is not meant for
// concurrent use by several threads). Descriptors and algorithm choices are cached per shape in
// the context's KeyedCache, on the worker too, so no lock is needed.
#pragma once

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../common/backend.h"
#include "../common/capture_ledger.h"
#include "../common/context.h"
#include "../common/errors.h"
#include "../common/keyed_cache.h"
#include "../common/storage.h"
#include "kernels/launch.h"
#include "pinned_pool.h"

namespace cr::cuda {

// Check a CUDA runtime / cuDNN status: anything but success becomes a NativeError whose code is
// the status's name (cudaErrorMemoryAllocation, CUDNN_STATUS_BAD_PARAM) and whose message names
// the op, the library's description, the call and file:line.
#define CR_CUDA(expr) ::cr::cuda::CheckCuda((expr), #expr, __FILE__, __LINE__)
#define CR_CUDNN(expr) ::cr::cuda::CheckCudnn((expr), #expr, __FILE__, __LINE__)

[[noreturn]] void ThrowCuda(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void ThrowCudnn(cudnnStatus_t status, const char* call, const char* file, int line);
inline void CheckCuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess) ThrowCuda(status, call, file, line);
}
inline void CheckCudnn(cudnnStatus_t status, const char* call, const char* file, int line) {
  if (status != CUDNN_STATUS_SUCCESS) ThrowCudnn(status, call, file, line);
}

// A status that cannot be thrown (a destructor, teardown, trimming a cache): one line on stderr,
// and the error cleared from CUDA's last-error slot so that the next launch does not report it
// under another op's name.
void Warn(const char* call, cudaError_t status);
void Warn(const char* call, cudnnStatus_t status);

// RAII for cuDNN descriptors. Creating one needs no GPU (only libcudnn), which the host-side
// tests rely on.
template <typename T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class CudnnDesc {
 public:
  CudnnDesc() { CR_CUDNN(Create(&d_)); }
  ~CudnnDesc() {
    const cudnnStatus_t st = Destroy(d_);
    if (st != CUDNN_STATUS_SUCCESS) Warn("cudnnDestroy*Descriptor", st);
  }
  CudnnDesc(const CudnnDesc&) = delete;
  CudnnDesc& operator=(const CudnnDesc&) = delete;
  T get() const { return d_; }

 private:
  T d_;
};

using TensorDesc = CudnnDesc<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = CudnnDesc<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc = CudnnDesc<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;
using PoolDesc = CudnnDesc<cudnnPoolingDescriptor_t, cudnnCreatePoolingDescriptor, cudnnDestroyPoolingDescriptor>;
using ActivationDesc =
    CudnnDesc<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor, cudnnDestroyActivationDescriptor>;

// cuDNN's element type for a buffer's.
cudnnDataType_t CudnnType(DType dtype);
bool IsHalf(DType dtype);
// The layout rule (top of this file): whether a buffer of these dims and type is channels-last.
bool ChannelsLast(const std::vector<int64_t>& dims, DType dtype);
// cuDNN's format for 4-D tensors and filters of `dtype`: NHWC for half precision, else NCHW.
cudnnTensorFormat_t CudnnFormat(DType dtype);
// A 4-D tensor descriptor of logical NCHW dims in the layout the rule gives a 4-D buffer of
// `dtype`. A [N, C, 1, 1] view of a 2-D [N, C] buffer (linear.cc) is the same memory either way.
void SetTensor4d(const TensorDesc& d, const std::vector<int64_t>& nchw, DType dtype = DType::kFloat32);
// A buffer's layout as the kernels take it.
math::Layout LayoutOf(const std::vector<int64_t>& dims, DType dtype);
// cuDNN's descriptors take int dimensions and strides: refuses (RangeError) a shape above 2^31
// elements. `what` names the tensors for the message.
void RequireCudnnSize(const std::vector<int64_t>& dims, const std::string& what);

// The GPU of one backend: streams, cuDNN handle, memory pool. Shared by the backend and by every
// storage, so that a buffer freed after the backend (at environment teardown) still has its
// stream.
class Device {
 public:
  Device(int index, const cudaDeviceProp& props);
  // Waits for both streams (the host functions that return staging buffers run by then), and
  // warns about what fails or was never reported: nothing can be thrown any more.
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // Called where a status cannot be thrown (a destructor's cudaFreeAsync): the error is cleared
  // from CUDA's last-error slot, so that the next launch does not report it under another op's
  // name, and the first one is kept for the next sync point.
  void RecordDeferred(cudaError_t status, const char* call);
  // The kept error, once: {status name, message}.
  std::optional<std::pair<std::string, std::string>> TakeDeferred();
  // Frees `ptr` in the order of `stream`, from any thread, or defers the free while a step is
  // being captured (capture_ledger.h); a failure is kept for the next sync point.
  void FreeAsync(void* ptr);

  const int index;
  const cudaDeviceProp props;
  // Every op, and every free.
  cudaStream_t stream = nullptr;
  // Uploads from pinned memory; `stream` waits for each through `upload_done` (worker only).
  cudaStream_t copy_stream = nullptr;
  cudaEvent_t upload_done = nullptr;
  // The pool every allocation names (the default pool), trimmed by emptyCache(), counted by cachedBytes().
  cudaMemPool_t pool = nullptr;
  cudnnHandle_t cudnn = nullptr;
  // The captured step being recorded on `stream`, if any (graph.cc).
  CaptureLedger capture;

 private:
  void Release();
  std::atomic<int> deferred_{int(cudaSuccess)};
  std::atomic<const char*> deferred_call_{nullptr};
};

// Device memory from the stream-ordered pool, allocated and freed in stream order. Made by a
// task while a step is captured (a lone running statistic's scratch partner, a fused batch
// norm's reserve space, countNonFinite's counter), it is allocated outside the graph and kept
// alive with it, as a buffer first used there is (CudaStorage::Ptr): the graph uses it at every
// replay, long after the task that made it dropped it.
class DeviceMemory {
 public:
  DeviceMemory(std::shared_ptr<Device> device, size_t bytes);
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  void* get() const { return mem_.get(); }
  size_t bytes() const { return bytes_; }

 private:
  // Freed in stream order when its last owner goes: this object, or the graph that kept it.
  std::shared_ptr<void> mem_;
  size_t bytes_;
};

// Shared from this: a captured step keeps every buffer its graph uses (capture_ledger.h).
class CudaStorage : public Storage, public std::enable_shared_from_this<CudaStorage> {
 public:
  CudaStorage(std::shared_ptr<Device> device, std::vector<int64_t> dims, DType dtype);
  // For opaque storages that own no memory of their own (max-pooling workspaces).
  CudaStorage(std::shared_ptr<Device> device, std::vector<int64_t> dims, DType dtype, size_t bytes);
  ~CudaStorage() override;

  // The device memory, allocated on first use on the compute stream. Worker thread only (see the
  // top of this file). While a step is captured, kept alive with its graph, and allocated outside
  // the graph when first used there (graph.cc).
  void* Ptr();
  float* F() { return static_cast<float*>(Ptr()); }
  int32_t* I() { return static_cast<int32_t*>(Ptr()); }
  // Allocates the memory in the order of `stream` instead, for a first use there (an upload on the
  // copy stream; the compute stream must then wait for `stream` before any other use or the
  // free). Not poisoned: the caller writes every byte. Worker thread only, before any Ptr().
  void* AllocateOn(cudaStream_t stream);

 private:
  std::shared_ptr<Device> device_;
  void* ptr_ = nullptr;
};

using CudaStoragePtr = std::shared_ptr<CudaStorage>;

class CudaBackend;
// dst's values from src's of the same logical (row-major) indices, converted from src's type and
// layout to dst's (a 1-D buffer is plain): one kernels::Convert on the compute stream (buffers.cc).
// Worker only.
void ConvertInto(CudaBackend& b, CudaStorage& src, CudaStorage& dst);

// A storage handed in by the front end: made by this backend (see backend.h).
inline CudaStoragePtr Cuda(const StoragePtr& s) { return std::static_pointer_cast<CudaStorage>(s); }

// The end of the work queued so far on a device's compute stream, and the label error recorded by
// then: made on the worker at a sync point, waited for off it (the Completion of Drain and
// ReadPlain).
class SyncPoint {
 public:
  // Copies the label error to pinned memory and clears it, then records the event.
  SyncPoint(std::shared_ptr<Device> device, int* label_error);
  // Waits for the event first where Wait did not (see waited_).
  ~SyncPoint();
  SyncPoint(const SyncPoint&) = delete;
  SyncPoint& operator=(const SyncPoint&) = delete;
  // Waits for that work; throws what it failed with: a CUDA error of an earlier launch, a
  // deferred error of a free, a label out of range.
  void Wait();

 private:
  std::shared_ptr<Device> device_;
  PinnedBuffer label_;
  cudaEvent_t event_ = nullptr;
  // Set once Wait saw the event complete; the destructor waits for it otherwise, so that no
  // pinned block goes back to its pool while a copy before the event may still write it.
  bool waited_ = false;
};

// cuDNN's scaling factors for float tensors.
extern const float kOne;
extern const float kZero;

struct NcclGroup;
struct CapturedGraph;

// Why the collectives cannot use NCCL here ("" when they can: built with its header, and
// libnccl.so.2 opened with every function they call), and NCCL's version code when it opened
// (collectives.cc). Needs no GPU.
std::string NcclUnavailable(int& version);

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(Context& ctx);
  ~CudaBackend() override;

  // Probes once (no CUDA context is created); after a failed start, the start's failure.
  std::string Unavailable() override;
  void Start() override;
  // A SyncPoint, and its Wait as the Completion.
  Completion Drain() override;
  // Before the first op only: another index afterwards throws (a second device is a second
  // addon instance).
  void UseDevice(int64_t index) override;
  int MemoryDomain() const override { return index_; }

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

  // Captured steps (graph.cc).
  uint64_t CaptureBegin() override;
  void CaptureEnd(bool keep) override;
  void GraphLaunch(uint64_t id) override;
  void GraphRelease(uint64_t id) override;
  GraphStatus GraphStatusOf(uint64_t id) override;
  bool Capturing() const override { return device_ && device_->capture.Active(); }

  std::vector<uint8_t> GroupPrepare(const GroupArgs& a) override;
  void GroupConnect(const std::vector<std::vector<uint8_t>>& published) override;
  void GroupDestroy() override;
  void GroupAbort(const std::string& why) override;
  StartedCollective CollectiveStart(const CollectiveArgs& a) override;
  void CollectiveWait(uint64_t ticket) override;

  // Worker-only state and helpers, for the op files.

  // A workspace of at least `bytes` for a cuDNN call, grown as needed and never shrunk; null
  // when `bytes` exceeds the cap or cannot be allocated, so the caller falls back to an
  // algorithm that needs less. While a step is captured it does not grow (the graph keeps the one
  // it uses, and an allocation on the capturing stream would become part of the graph): null
  // there too, and the same fallback.
  void* Workspace(size_t bytes);
  static size_t WorkspaceCap();
  // Where kernels record an out-of-range label (kernels::LabelError).
  int* label_error() const { return label_error_; }
  const std::shared_ptr<Device>& device() const { return device_; }
  cudaStream_t stream() const { return device_->stream; }
  cudnnHandle_t cudnn() const { return device_->cudnn; }
  // The cached entry for `key` (worker only). A miss while a step is captured is refused: building
  // an entry chooses algorithms, which may run and time them (CUDNN_RESNET_BENCHMARK) or
  // allocate; the step's eager warm-up calls fill the cache for its shapes.
  template <typename T, typename Build>
  std::shared_ptr<T> Cached(const std::string& key, Build&& build) {
    return ctx_.cache.Get<T>(key, [&] {
      RefuseInCapture("a cuDNN plan for new shapes (built on their first use)");
      return build();
    });
  }
  // Worker. While a step is captured: marks the capture failed and throws ERR_CAPTURE_REFUSED,
  // "<current op>: <what> cannot be part of a captured step"; nothing otherwise.
  void RefuseInCapture(const std::string& what);

 private:
  CudaStoragePtr Alloc(const std::vector<int64_t>& dims, DType dtype = DType::kFloat32);
  // Pushes a task that runs with this backend's device current on the worker.
  void Enqueue(std::string task, std::function<void()> work);

  // The upload task: from pinned `staging` on the copy stream (see the top of this file).
  void CopyIn(CudaStorage& s, const std::shared_ptr<PinnedBuffer>& staging);

  // Worker: ends the capture being recorded, if any, and instantiates its graph or discards it
  // (graph.cc).
  void EndCapture(bool keep);

  std::atomic<bool> tf32_{true};
  int index_ = 0;
  int device_count_ = -1;
  bool probed_ = false;
  std::string reason_;
  cudaDeviceProp props_{};
  std::shared_ptr<Device> device_;
  // Shared: a captured step's graph keeps the workspace it was recorded with.
  std::shared_ptr<DeviceMemory> workspace_;
  std::unique_ptr<DeviceMemory> label_error_mem_;
  int* label_error_ = nullptr;
  // The NCCL process group (collectives.cc): set on the JS thread, read by the worker when it
  // connects (std::atomic_load/store).
  std::shared_ptr<NcclGroup> group_;
  // Captured steps' graphs by id (JS thread); each task that uses one holds it too.
  std::map<uint64_t, std::shared_ptr<CapturedGraph>> graphs_;
  uint64_t next_graph_id_ = 1;
  // The graph being captured (worker only).
  std::shared_ptr<CapturedGraph> capturing_;
};

}  // namespace cr::cuda
