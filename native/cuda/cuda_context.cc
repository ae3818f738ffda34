#include "cuda_context.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace cr::cuda {

const float kOne = 1.f;
const float kZero = 0.f;

namespace {

std::string Where(const char* call, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  return std::string(" (") + call + " at " + (base ? base + 1 : file) + ":" + std::to_string(line) + ")";
}

// CUDNN_RESNET_POISON=1 fills every new buffer with NaN bytes, so a kernel that leaves part of
// its output unwritten fails the tests (as on the CPU backend).
const bool kPoison = [] {
  const char* v = std::getenv("CUDNN_RESNET_POISON");
  return v && *v && std::strcmp(v, "0") != 0;
}();

std::string Version(int v, int major_div, int minor_div) {
  return std::to_string(v / major_div) + "." + std::to_string((v % major_div) / minor_div);
}

std::string CudnnVersionString(size_t v) {
  // cuDNN 9 encodes major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100);
}

}  // namespace

void ThrowCuda(cudaError_t status, const char* call, const char* file, int line) {
  // Clears a non-sticky error so that the next call does not report it again.
  cudaGetLastError();
  Fail(cudaGetErrorName(status), std::string(cudaGetErrorString(status)) + Where(call, file, line));
}

void ThrowCudnn(cudnnStatus_t status, const char* call, const char* file, int line) {
  std::string message = cudnnGetErrorString(status);
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof detail);
  if (detail[0]) message += std::string(": ") + detail;
  Fail(cudnnGetErrorString(status), message + Where(call, file, line));
}

void SetTensor4d(const TensorDesc& d, const std::vector<int64_t>& s) {
  CR_CUDNN(cudnnSetTensor4dDescriptor(d.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(s[0]), int(s[1]), int(s[2]),
                                      int(s[3])));
}

Device::Device(int index_, const cudaDeviceProp& props_) : index(index_), props(props_) {
  try {
    CR_CUDA(cudaSetDevice(index));
    CR_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CR_CUDA(cudaDeviceGetDefaultMemPool(&pool, index));
    // Keep freed blocks for reuse instead of returning them to the driver at every
    // synchronization: a training step frees and allocates the same activations each iteration.
    // emptyCache() trims the pool.
    uint64_t keep = UINT64_MAX;
    CR_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    CR_CUDNN(cudnnCreate(&cudnn));
    CR_CUDNN(cudnnSetStream(cudnn, stream));
  } catch (...) {
    // A throwing constructor runs no destructor: release what was made before the failure.
    Release();
    throw;
  }
}

Device::~Device() { Release(); }

void Device::Release() {
  if (cudnn) cudnnDestroy(cudnn);
  cudnn = nullptr;
  if (stream) {
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
  stream = nullptr;
}

DeviceMemory::DeviceMemory(std::shared_ptr<Device> device, size_t bytes) : device_(std::move(device)), bytes_(bytes) {
  CR_CUDA(cudaMallocAsync(&ptr_, bytes_ ? bytes_ : 1, device_->stream));
}

DeviceMemory::~DeviceMemory() {
  if (ptr_) cudaFreeAsync(ptr_, device_->stream);
}

CudaStorage::CudaStorage(std::shared_ptr<Device> device, std::vector<int64_t> dims, DType dtype)
    : Storage(dims, dtype, 0 + DTypeSize(dtype) * [&] {
        size_t n = 1;
        for (int64_t d : dims) n *= size_t(d);
        return n;
      }()),
      device_(std::move(device)) {}

CudaStorage::CudaStorage(std::shared_ptr<Device> device, std::vector<int64_t> dims, DType dtype, size_t bytes)
    : Storage(std::move(dims), dtype, bytes), device_(std::move(device)) {}

CudaStorage::~CudaStorage() {
  // The last reference goes either on the worker (after the last task that used the buffer)
  // or on the JS thread when no queued task holds it, that is, after every use was launched:
  // freeing in stream order is then correct from either thread.
  if (ptr_) cudaFreeAsync(ptr_, device_->stream);
}

void* CudaStorage::Ptr() {
  // Only an opaque storage (a max-pooling workspace) has no bytes. Handing its null pointer to a
  // kernel or a copy would be an illegal address, a sticky error that ends the CUDA context for
  // the whole process, so using one as data fails the op instead.
  if (bytes == 0) Fail("ERR_OPAQUE_BUFFER", "a buffer of shape " + ShapeString() + " is an opaque workspace and holds no values");
  if (!ptr_) {
    CR_CUDA(cudaMallocAsync(&ptr_, bytes, device_->stream));
    if (kPoison) CR_CUDA(cudaMemsetAsync(ptr_, 0xff, bytes, device_->stream));
  }
  return ptr_;
}

namespace {

std::string ProbeFailure(cudaError_t st) {
  int driver = 0;
  cudaDriverGetVersion(&driver);
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  std::string name = cudaGetErrorName(st);
  if (st == cudaErrorInsufficientDriver && driver == 0) {
    return "no CUDA driver (" + name + "): libcuda.so.1 was not found; install the NVIDIA driver";
  }
  if (st == cudaErrorInsufficientDriver) {
    return "the NVIDIA driver supports CUDA " + Version(driver, 1000, 10) + ", older than the CUDA runtime " +
           Version(runtime, 1000, 10) + " this addon was built with (" + name +
           "); update the driver or rebuild with an older CUDA toolkit";
  }
  if (st == cudaErrorNoDevice) return "no CUDA device (" + name + "): the driver sees no GPU";
  return "CUDA could not be initialised (" + name + ": " + cudaGetErrorString(st) + ")";
}

}  // namespace

CudaContext::CudaContext() : CommonContext("cuda", 1 << 14) {
  const char* tf = std::getenv("CUDNN_RESNET_TF32");
  if (tf && std::strcmp(tf, "0") == 0) tf32 = false;

  const size_t cudnn_version = cudnnGetVersion();
  if (cudnn_version / 10000 != CUDNN_MAJOR) {
    reason = "libcudnn " + CudnnVersionString(cudnn_version) + " was loaded, but this addon was built for cuDNN " +
             std::to_string(CUDNN_MAJOR);
    return;
  }
  int count = 0;
  cudaError_t st = cudaGetDeviceCount(&count);
  if (st != cudaSuccess) {
    cudaGetLastError();
    reason = ProbeFailure(st);
    return;
  }
  if (count == 0) {
    reason = "no CUDA device (cudaGetDeviceCount returned 0)";
    return;
  }
  cudaDeviceProp props;
  st = cudaGetDeviceProperties(&props, 0);
  if (st != cudaSuccess) {
    cudaGetLastError();
    reason = ProbeFailure(st);
    return;
  }
  // The build carries sm_80 and sm_90 code and sm_90 PTX: any 8.x or newer GPU can run it.
  if (props.major < 8) {
    reason = std::string("GPU 0 (") + props.name + ") has compute capability " + std::to_string(props.major) + "." +
             std::to_string(props.minor) + "; this build has code for 8.0 and newer (CMAKE_CUDA_ARCHITECTURES)";
    return;
  }
  // Every buffer comes from cudaMallocAsync; a driver or virtualised GPU without memory pools
  // would fail at the first allocation, so say so here.
  int pools = 0;
  if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, 0) != cudaSuccess || !pools) {
    cudaGetLastError();
    reason = std::string("GPU 0 (") + props.name + ") does not support stream-ordered memory pools (cudaMallocAsync), "
             "which this backend allocates from";
    return;
  }
  try {
    device = std::make_shared<Device>(0, props);
    label_error_mem_ = std::make_unique<DeviceMemory>(device, sizeof(kernels::LabelError));
    label_error = static_cast<int*>(label_error_mem_->get());
    CR_CUDA(cudaMemsetAsync(label_error, 0, sizeof(kernels::LabelError), device->stream));
  } catch (const NativeError& e) {
    reason = std::string("GPU 0 (") + props.name + ") could not be set up: " + e.what();
    label_error_mem_.reset();
    label_error = nullptr;
    device.reset();
  }
}

CudaContext::~CudaContext() {
  queue.Stop();
  workspace_.reset();
  label_error_mem_.reset();
  plans_.clear();
}

void CudaContext::Drain() {
  if (!device) return;
  CR_CUDA(cudaStreamSynchronize(device->stream));
  kernels::LabelError e;
  CR_CUDA(cudaMemcpy(&e, label_error, sizeof e, cudaMemcpyDeviceToHost));
  if (e.set) {
    CR_CUDA(cudaMemsetAsync(label_error, 0, sizeof e, device->stream));
    // Named as the op was when enqueued (Describe: the op and its input shapes), as on the CPU.
    const std::string n = std::to_string(e.rows), k = std::to_string(e.classes);
    const std::string op = std::string(e.op == 0 ? "softmaxCrossEntropy" : "softmaxCrossEntropyBackward") + " [" + n +
                           ", " + k + "] [" + n + "]";
    throw NativeError("cuda", op, "ERR_LABEL_OUT_OF_RANGE",
                      op + ": label " + std::to_string(e.label) + " at row " + std::to_string(e.row) + " is outside [0, " +
                          k + ")");
  }
}

size_t CudaContext::WorkspaceCap() {
  // Algorithms that want more than this are passed over for ones that need less: beyond a few
  // hundred MiB the speed-up is small and the memory is better spent on activations.
  static const size_t cap = [] {
    const char* v = std::getenv("CUDNN_RESNET_WORKSPACE_MB");
    long mb = v ? std::strtol(v, nullptr, 10) : 0;
    return size_t(mb > 0 ? mb : 1024) << 20;
  }();
  return cap;
}

void* CudaContext::Workspace(size_t bytes) {
  if (bytes == 0) return nullptr;
  if (bytes > WorkspaceCap()) return nullptr;
  if (workspace_ && workspace_->bytes() >= bytes) return workspace_->get();
  workspace_.reset();
  try {
    workspace_ = std::make_unique<DeviceMemory>(device, bytes);
  } catch (const NativeError&) {
    return nullptr;
  }
  return workspace_->get();
}

CudaContext& AnyCtx(Napi::Env env) { return static_cast<CudaContext&>(GetContext(env)); }

CudaContext& Live(Napi::Env env) {
  CudaContext& ctx = AnyCtx(env);
  if (!ctx.device) Fail("ERR_CUDA_UNAVAILABLE", "the CUDA backend is unavailable: " + ctx.reason);
  return ctx;
}

CudaStoragePtr Alloc(CudaContext& ctx, const std::vector<int64_t>& dims, DType dtype) {
  return std::make_shared<CudaStorage>(ctx.device, dims, dtype);
}

CudaStoragePtr Arg(Napi::Env env, Napi::Value v, const char* what) {
  return std::static_pointer_cast<CudaStorage>(UnwrapStorage(env, v, what));
}

CudaStoragePtr OptionalArg(Napi::Env env, Napi::Value v, const char* what) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  return Arg(env, v, what);
}

void Enqueue(CudaContext& ctx, std::string name, std::function<void()> task) {
  const int index = ctx.device->index;
  ctx.queue.Push(std::move(name), [index, task = std::move(task)] {
    CR_CUDA(cudaSetDevice(index));
    task();
  });
}

}  // namespace cr::cuda
