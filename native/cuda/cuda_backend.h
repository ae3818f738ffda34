// The cuDNN backend: the Backend interface (native/common/backend.h) on cuDNN and a few CUDA
// kernels (kernels/). Each op's cuDNN calls are in the file named like the front end's.
//
// Start-up: nothing touches the GPU when the addon loads. info() only probes (driver, device
// count and properties, the cuDNN library's version), which creates no CUDA context; the device
// (stream, memory pool, cuDNN handle: a CUDA context of ~500 MB and cuDNN's kernels, ~1 GB) is
// set up by the first op. A process that imports the library for the CPU, or for `info`, never
// pays for it.
//
// Execution: the context's worker thread (native/common's Queue) runs tasks in the order JS
// enqueued them; a task launches work on the backend's one CUDA stream and returns without
// waiting. Only sync points (readback, sync()) wait for the stream, on the worker.
//
// Memory: device buffers come from CUDA's stream-ordered allocator (cudaMallocAsync on the
// device's default pool, whose release threshold keeps freed blocks cached until emptyCache()).
// A buffer's memory is allocated by the first task that uses it, on the worker, not when JS
// enqueues the op: stream-ordered allocation is only correct in stream order, and the worker is
// the one thread that submits to the stream in queue order, so an allocation can reuse a block
// freed by an earlier task without any synchronization. It also means that an out-of-memory is
// an execution failure reported at the next sync point with the op's name, like a cuDNN status.
//
// cuDNN: one handle per backend, used only by the worker (a cuDNN handle is not meant for
// concurrent use by several threads). Descriptors and algorithm choices are cached per shape in
// the context's KeyedCache, on the worker too, so no lock is needed.
#pragma once

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../common/backend.h"
#include "../common/context.h"
#include "../common/errors.h"
#include "../common/keyed_cache.h"
#include "../common/storage.h"
#include "kernels/launch.h"

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

// RAII for cuDNN descriptors. Creating one needs no GPU (only libcudnn), which the host-side
// tests rely on.
template <typename T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class CudnnDesc {
 public:
  CudnnDesc() { CR_CUDNN(Create(&d_)); }
  ~CudnnDesc() { Destroy(d_); }
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

// cuDNN's element type for a buffer's.
cudnnDataType_t CudnnType(DType dtype);
// A plain NCHW tensor descriptor.
void SetTensor4d(const TensorDesc& d, const std::vector<int64_t>& nchw, DType dtype = DType::kFloat32);
// cuDNN's descriptors take int dimensions and strides: refuses (RangeError) a shape above 2^31
// elements. `what` names the tensors for the message.
void RequireCudnnSize(const std::vector<int64_t>& dims, const std::string& what);

// The GPU of one backend: stream, cuDNN handle, memory pool. Shared by the backend and by every
// storage, so that a buffer freed after the backend (at environment teardown) still has its
// stream.
class Device {
 public:
  Device(int index, const cudaDeviceProp& props);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // Called where a status cannot be thrown (a destructor's cudaFreeAsync): the error is cleared
  // from CUDA's last-error slot, so that the next launch does not report it under another op's
  // name, and the first one is kept for the next sync point.
  void RecordDeferred(cudaError_t status, const char* call);
  // The kept error, once: {status name, message}.
  std::optional<std::pair<std::string, std::string>> TakeDeferred();

  const int index;
  const cudaDeviceProp props;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;
  cudnnHandle_t cudnn = nullptr;

 private:
  void Release();
  std::atomic<int> deferred_{int(cudaSuccess)};
  std::atomic<const char*> deferred_call_{nullptr};
};

// Device memory from the stream-ordered pool, allocated and freed in stream order.
class DeviceMemory {
 public:
  DeviceMemory(std::shared_ptr<Device> device, size_t bytes);
  ~DeviceMemory();
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  std::shared_ptr<Device> device_;
  void* ptr_ = nullptr;
  size_t bytes_;
};

class CudaStorage : public Storage {
 public:
  CudaStorage(std::shared_ptr<Device> device, std::vector<int64_t> dims, DType dtype);
  // For opaque storages that own no memory of their own (max-pooling workspaces).
  CudaStorage(std::shared_ptr<Device> device, std::vector<int64_t> dims, DType dtype, size_t bytes);
  ~CudaStorage() override;

  // The device memory, allocated on first use. Worker thread only (see the top of this file).
  void* Ptr();
  float* F() { return static_cast<float*>(Ptr()); }
  int32_t* I() { return static_cast<int32_t*>(Ptr()); }

 private:
  std::shared_ptr<Device> device_;
  void* ptr_ = nullptr;
};

using CudaStoragePtr = std::shared_ptr<CudaStorage>;

// A storage handed in by the front end: made by this backend (see backend.h).
inline CudaStoragePtr Cuda(const StoragePtr& s) { return std::static_pointer_cast<CudaStorage>(s); }

// cuDNN's scaling factors for float tensors.
extern const float kOne;
extern const float kZero;

struct NcclGroup;

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
  // Waits for the stream and reports what its work failed with (kernel faults, bad labels).
  void Drain() override;

  BackendInfo Info() override;
  void SetNumThreads(int threads) override;
  void SetTf32(bool enabled) override;
  void EmptyCache() override;
  int64_t CachedBytes() override;

  StoragePtr Upload(const UploadArgs& a) override;
  StoragePtr Fill(const FillArgs& a) override;
  StoragePtr ZerosLike(const OpArgs& a, const StoragePtr& like) override;
  void ReadPlain(const StoragePtr& s, void* dst) override;
  StoragePtr Reshape(const ReshapeArgs& a) override;

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

  std::vector<uint8_t> GroupPrepare(const GroupArgs& a) override;
  void GroupConnect(const std::vector<std::vector<uint8_t>>& published) override;
  void GroupDestroy() override;
  void GroupAbort(const std::string& why) override;
  StartedCollective CollectiveStart(const CollectiveArgs& a) override;
  void CollectiveWait(uint64_t ticket) override;

  // Worker-only state and helpers, for the op files.

  // A workspace of at least `bytes` for a cuDNN call, grown as needed and never shrunk; null
  // when `bytes` exceeds the cap or cannot be allocated, so the caller falls back to an
  // algorithm that needs less.
  void* Workspace(size_t bytes);
  static size_t WorkspaceCap();
  // Where kernels record an out-of-range label (kernels::LabelError).
  int* label_error() const { return label_error_; }
  const std::shared_ptr<Device>& device() const { return device_; }
  cudaStream_t stream() const { return device_->stream; }
  cudnnHandle_t cudnn() const { return device_->cudnn; }
  // The cached entry for `key` (worker only).
  template <typename T, typename Build>
  std::shared_ptr<T> Cached(const std::string& key, Build&& build) {
    return ctx_.cache.Get<T>(key, std::forward<Build>(build));
  }

 private:
  CudaStoragePtr Alloc(const std::vector<int64_t>& dims, DType dtype = DType::kFloat32);
  // Pushes a task that runs with this backend's device current on the worker.
  void Enqueue(std::string task, std::function<void()> work);

  std::atomic<bool> tf32_{true};
  bool probed_ = false;
  std::string reason_;
  cudaDeviceProp props_{};
  std::shared_ptr<Device> device_;
  std::unique_ptr<DeviceMemory> workspace_;
  std::unique_ptr<DeviceMemory> label_error_mem_;
  int* label_error_ = nullptr;
  // The NCCL process group (collectives.cc): set on the JS thread, read by the worker when it
  // connects (std::atomic_load/store).
  std::shared_ptr<NcclGroup> group_;
};

}  // namespace cr::cuda
