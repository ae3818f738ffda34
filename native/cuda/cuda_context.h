// State of the cuDNN backend and the helpers every CUDA op shares.
//
// Execution: the addon's worker thread (native/common's Queue) runs tasks in the order JS
// enqueued them; a task launches work on the addon's one CUDA stream and returns without
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
// cuDNN: one handle per addon instance, used only by the worker (a cuDNN handle is not meant
// for concurrent use by several threads). Descriptors and algorithm choices are cached per shape,
// on the worker too, so no lock is needed.
#pragma once

#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <napi.h>

#include <atomic>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "../common/args.h"
#include "../common/checks.h"
#include "../common/context.h"
#include "../common/errors.h"
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

// A plain NCHW float32 tensor descriptor.
void SetTensor4d(const TensorDesc& d, const std::vector<int64_t>& nchw);

// The GPU of one addon instance: stream, cuDNN handle, memory pool. Shared by the context and
// by every storage, so that a buffer freed after the context (at environment teardown) still
// has its stream.
class Device {
 public:
  Device(int index, const cudaDeviceProp& props);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const int index;
  const cudaDeviceProp props;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;
  cudnnHandle_t cudnn = nullptr;

 private:
  void Release();
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

class CudaContext : public CommonContext {
 public:
  // Probes the driver and the GPU; never throws: an unusable GPU leaves `device` null and
  // `reason` saying why.
  CudaContext();
  ~CudaContext() override;

  // Waits for the stream and reports what its work failed with (kernel faults, bad labels).
  void Drain() override;

  std::shared_ptr<Device> device;
  std::string reason;
  std::atomic<bool> tf32{true};

  // Worker-only state.
  // A workspace of at least `bytes` for a cuDNN call, grown as needed and never shrunk; null
  // when `bytes` exceeds the cap or cannot be allocated, so the caller falls back to an
  // algorithm that needs less.
  void* Workspace(size_t bytes);
  static size_t WorkspaceCap();
  int* label_error = nullptr;

  template <typename T, typename Build>
  std::shared_ptr<T> Plan(const std::string& key, Build&& build) {
    auto it = plans_.find(key);
    if (it != plans_.end()) return std::static_pointer_cast<T>(it->second);
    std::shared_ptr<T> made = build();
    plans_.emplace(key, made);
    return made;
  }

 private:
  std::unique_ptr<DeviceMemory> workspace_;
  std::unique_ptr<DeviceMemory> label_error_mem_;
  std::unordered_map<std::string, std::shared_ptr<void>> plans_;
};

// The context of this environment, which must have a usable GPU: ops throw the reason
// (ERR_CUDA_UNAVAILABLE) otherwise.
CudaContext& Live(Napi::Env env);
// The context whether or not the GPU is usable (info, host-side checks).
CudaContext& AnyCtx(Napi::Env env);

CudaStoragePtr Alloc(CudaContext& ctx, const std::vector<int64_t>& dims, DType dtype = DType::kFloat32);
CudaStoragePtr Arg(Napi::Env env, Napi::Value v, const char* what);
CudaStoragePtr OptionalArg(Napi::Env env, Napi::Value v, const char* what);

// Pushes a task for op `name` that runs with the device current on the worker.
void Enqueue(CudaContext& ctx, std::string name, std::function<void()> task);

// cuDNN's scaling factors for float tensors.
extern const float kOne;
extern const float kZero;

}  // namespace cr::cuda
