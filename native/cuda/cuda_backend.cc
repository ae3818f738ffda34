#include "cuda_backend.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
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

std::string CudaVersion(int v) {
  if (v <= 0) return "none";
  return Version(v, 1000, 10);
}

std::string CudnnVersion(size_t v) {
  // cuDNN 9 encodes major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100);
}

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

void Warn(const char* call, cudaError_t status) {
  cudaGetLastError();
  // The runtime is being torn down with the process (its exit handlers ran first): what was to
  // be released goes with it, and there is nothing to report.
  if (status == cudaErrorCudartUnloading) return;
  std::fprintf(stderr, "cudnn-resnet: warning: cuda: %s failed: %s (%s)\n", call, cudaGetErrorName(status),
               cudaGetErrorString(status));
}

void Warn(const char* call, cudnnStatus_t status) {
  std::fprintf(stderr, "cudnn-resnet: warning: cuda: %s failed: %s\n", call, cudnnGetErrorString(status));
}

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

cudnnDataType_t CudnnType(DType dtype) {
  switch (dtype) {
    case DType::kInt32:
      return CUDNN_DATA_INT32;
    case DType::kBFloat16:
      return CUDNN_DATA_BFLOAT16;
    case DType::kFloat16:
      return CUDNN_DATA_HALF;
    case DType::kFloat32:
      break;
  }
  return CUDNN_DATA_FLOAT;
}

bool IsHalf(DType dtype) { return dtype == DType::kBFloat16 || dtype == DType::kFloat16; }

bool ChannelsLast(const std::vector<int64_t>& dims, DType dtype) { return dims.size() == 4 && IsHalf(dtype); }

cudnnTensorFormat_t CudnnFormat(DType dtype) { return IsHalf(dtype) ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW; }

void SetTensor4d(const TensorDesc& d, const std::vector<int64_t>& s, DType dtype) {
  CR_CUDNN(cudnnSetTensor4dDescriptor(d.get(), CudnnFormat(dtype), CudnnType(dtype), int(s[0]), int(s[1]), int(s[2]),
                                      int(s[3])));
}

math::Layout LayoutOf(const std::vector<int64_t>& dims, DType dtype) {
  if (!ChannelsLast(dims, dtype)) return {false, 0, 0};
  return {true, dims[1], dims[2] * dims[3]};
}

void RequireCudnnSize(const std::vector<int64_t>& dims, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  if (n > INT32_MAX) {
    ThrowRangeError(OpScope::CurrentOp() + ": tensors above 2^31 elements are not supported by cuDNN's 4-D descriptors (" +
                    what + ")");
  }
}

Device::Device(int index_, const cudaDeviceProp& props_) : index(index_), props(props_) {
  try {
    CR_CUDA(cudaSetDevice(index));
    CR_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CR_CUDA(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));
    CR_CUDA(cudaEventCreateWithFlags(&upload_done, cudaEventDisableTiming));
    CR_CUDA(cudaDeviceGetDefaultMemPool(&pool, index));
    // Keep freed blocks for reuse instead of returning them to the driver at every
    // synchronization: a training step frees and allocates the same activations each iteration.
    // emptyCache() trims the pool.
    uint64_t keep = UINT64_MAX;
    CR_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    // An upload allocates on the copy stream, often a block the compute stream freed. Reuse stays
    // safe without this (a block whose free has completed, or one ordered by events), but with it
    // the driver may make the copy stream wait for the compute stream, which would serialize the
    // upload behind the step it should overlap.
    int internal = 0;
    CR_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolReuseAllowInternalDependencies, &internal));
    CR_CUDNN(cudnnCreate(&cudnn));
    CR_CUDNN(cudnnSetStream(cudnn, stream));
  } catch (...) {
    // A throwing constructor runs no destructor: release what was made before the failure.
    Release();
    throw;
  }
}

Device::~Device() {
  Release();
  if (auto deferred = TakeDeferred()) {
    std::fprintf(stderr, "cudnn-resnet: warning: cuda: %s: %s (after the last sync point)\n", deferred->first.c_str(),
                 deferred->second.c_str());
  }
}

// Teardown: nothing can be reported any more but on stderr, and no status may linger in CUDA's
// last-error slot for whatever runs next on this thread.
void Device::Release() {
  if (!stream && !copy_stream && !upload_done && !cudnn) return;
  const auto check = [](cudaError_t st, const char* call) {
    if (st != cudaSuccess) Warn(call, st);
  };
  check(cudaSetDevice(index), "cudaSetDevice (teardown)");
  for (cudaStream_t s : {copy_stream, stream}) {
    if (s) check(cudaStreamSynchronize(s), "cudaStreamSynchronize (teardown)");
  }
  if (cudnn) {
    const cudnnStatus_t st = cudnnDestroy(cudnn);
    if (st != CUDNN_STATUS_SUCCESS) Warn("cudnnDestroy", st);
    cudnn = nullptr;
  }
  for (cudaStream_t* s : {&copy_stream, &stream}) {
    if (*s) check(cudaStreamDestroy(*s), "cudaStreamDestroy");
    *s = nullptr;
  }
  if (upload_done) check(cudaEventDestroy(upload_done), "cudaEventDestroy");
  upload_done = nullptr;
}

void Device::RecordDeferred(cudaError_t status, const char* call) {
  cudaGetLastError();
  if (status == cudaErrorCudartUnloading) return;
  int expected = int(cudaSuccess);
  if (deferred_.compare_exchange_strong(expected, int(status))) deferred_call_.store(call);
}

std::optional<std::pair<std::string, std::string>> Device::TakeDeferred() {
  const int status = deferred_.exchange(int(cudaSuccess));
  if (status == int(cudaSuccess)) return std::nullopt;
  const auto st = cudaError_t(status);
  const char* call = deferred_call_.load();
  return std::make_pair(std::string(cudaGetErrorName(st)),
                        std::string(cudaGetErrorString(st)) + " (" + (call ? call : "a deferred call") +
                            ", in the release of a buffer after an earlier op)");
}

namespace {

// The calling thread in cudaStreamCaptureModeRelaxed for the guard's lifetime, then back in its
// own mode, in the push-pop fashion cudaThreadExchangeStreamCaptureMode's documentation asks for.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() { CR_CUDA(cudaThreadExchangeStreamCaptureMode(&mode_)); }
  ~RelaxedCaptureMode() {
    const cudaError_t st = cudaThreadExchangeStreamCaptureMode(&mode_);
    if (st != cudaSuccess) Warn("cudaThreadExchangeStreamCaptureMode (restoring the capture mode)", st);
  }
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};

// A first allocation of `bytes` from the device's pool, worker only: in the order of the compute
// stream, or, while a step is captured, of the copy stream, which is not captured: on the compute
// stream the allocation would become a graph memory node, freed by the graph or never reusable at
// the same address. The compute stream waits for the copy stream before the graph's first launch
// (graph.cc, EndCapture), which orders this allocation before every use. The call is not part of
// the capture; in relaxed mode, so that the pool growing (mapping memory) is not taken for an
// unsafe call of the capturing thread. `ptr` is set before the poisoning (kPoison), so that its
// owner frees it if that fails.
void AllocateInOrder(Device& device, void*& ptr, size_t bytes, bool poison) {
  const bool capturing = device.capture.Active();
  std::optional<RelaxedCaptureMode> relaxed;
  if (capturing) relaxed.emplace();
  cudaStream_t on = capturing ? device.copy_stream : device.stream;
  CR_CUDA(cudaMallocFromPoolAsync(&ptr, bytes, device.pool, on));
  if (poison && kPoison) CR_CUDA(cudaMemsetAsync(ptr, 0xff, bytes, on));
}

}  // namespace

// Frees in stream order from whichever thread drops the last reference. That thread may serve
// another device (the JS thread), or none yet: the device is set first.
void Device::FreeAsync(void* ptr) {
  capture.FreeOrDefer(ptr, [this](void* p) {
    cudaError_t st = cudaSetDevice(index);
    if (st == cudaSuccess) st = cudaFreeAsync(p, stream);
    if (st != cudaSuccess) RecordDeferred(st, "cudaFreeAsync");
  });
}

DeviceMemory::DeviceMemory(std::shared_ptr<Device> device, size_t bytes) : bytes_(bytes) {
  void* p = nullptr;
  AllocateInOrder(*device, p, bytes_ ? bytes_ : 1, false);
  CaptureLedger& capture = device->capture;
  mem_ = std::shared_ptr<void>(p, [device = std::move(device)](void* q) { device->FreeAsync(q); });
  if (capture.Active()) capture.Keep(p, mem_);
}

CudaStorage::CudaStorage(std::shared_ptr<Device> device, std::vector<int64_t> dims, DType dtype)
    : Storage(dims, dtype,
              DTypeSize(dtype) * [&] {
                size_t n = 1;
                for (int64_t d : dims) n *= size_t(d);
                return n;
              }(),
              device->index),
      device_(std::move(device)) {}

CudaStorage::CudaStorage(std::shared_ptr<Device> device, std::vector<int64_t> dims, DType dtype, size_t bytes)
    : Storage(std::move(dims), dtype, bytes, device->index), device_(std::move(device)) {}

CudaStorage::~CudaStorage() {
  // The last reference goes either on the worker (after the last task that used the buffer)
  // or on the JS thread when no queued task holds it, that is, after every use was launched:
  // freeing in stream order is then correct from either thread.
  if (ptr_) device_->FreeAsync(ptr_);
}

void* CudaStorage::Ptr() {
  // Only an opaque storage (a max-pooling workspace) has no bytes. Handing its null pointer to a
  // kernel or a copy would be an illegal address, a sticky error that ends the CUDA context for
  // the whole process, so using one as data fails the op instead.
  if (bytes == 0) Fail("ERR_OPAQUE_BUFFER", "a buffer of shape " + ShapeString() + " is an opaque workspace and holds no values");
  CaptureLedger& capture = device_->capture;
  if (!ptr_) AllocateInOrder(*device_, ptr_, bytes, true);
  if (capture.Active()) capture.Keep(this, shared_from_this());
  return ptr_;
}

void* CudaStorage::AllocateOn(cudaStream_t stream) {
  if (ptr_ || bytes == 0) Fail("ERR_NATIVE", "a buffer of shape " + ShapeString() + " was allocated twice");
  cudaError_t st = cudaMallocFromPoolAsync(&ptr_, bytes, device_->pool, stream);
  if (st == cudaErrorMemoryAllocation && stream != device_->stream) {
    // Another stream than the compute stream (an upload's copy stream) may only reuse blocks whose
    // frees have completed: internal dependencies are off (see Device) and nothing orders it after
    // the compute stream. Memory the compute stream freed but has not reached yet (last step's
    // activations, while the step still runs) is then unavailable to it, and near the device's
    // capacity the upload fails where the same allocation on the compute stream would not. Wait
    // for the compute stream once, which completes those frees, and try again.
    cudaGetLastError();
    ptr_ = nullptr;
    CR_CUDA(cudaStreamSynchronize(device_->stream));
    st = cudaMallocFromPoolAsync(&ptr_, bytes, device_->pool, stream);
  }
  if (st != cudaSuccess) ptr_ = nullptr;
  CheckCuda(st, "cudaMallocFromPoolAsync(&ptr_, bytes, device_->pool, stream)", __FILE__, __LINE__);
  return ptr_;
}

SyncPoint::SyncPoint(std::shared_ptr<Device> device, int* label_error)
    : device_(std::move(device)), label_(device_->index, sizeof(kernels::LabelError)) {
  CR_CUDA(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming | cudaEventBlockingSync));
  try {
    CR_CUDA(cudaMemcpyAsync(label_.get(), label_error, sizeof(kernels::LabelError), cudaMemcpyDeviceToHost,
                            device_->stream));
    CR_CUDA(cudaMemsetAsync(label_error, 0, sizeof(kernels::LabelError), device_->stream));
    CR_CUDA(cudaEventRecord(event_, device_->stream));
  } catch (...) {
    // A throwing constructor runs no destructor, and the pinned block goes back to its pool now:
    // not while the copy may still write it.
    if (cudaStreamSynchronize(device_->stream) != cudaSuccess) cudaGetLastError();
    cudaEventDestroy(event_);
    cudaGetLastError();
    throw;
  }
}

SyncPoint::~SyncPoint() {
  if (!event_) return;
  cudaError_t st = cudaSetDevice(device_->index);
  // Never waited for (Wait threw before its cudaEventSynchronize, or the Completion was dropped):
  // the copies queued before the event may still write the pinned label block, and a readback's
  // pinned block, which goes back to its pool right after this. A block handed out again while a
  // copy still writes it would corrupt another readback's values: wait for the copies first.
  if (st == cudaSuccess && !waited_) {
    const cudaError_t wait = cudaEventSynchronize(event_);
    if (wait != cudaSuccess) device_->RecordDeferred(wait, "cudaEventSynchronize (a sync point nobody waited for)");
  }
  if (st == cudaSuccess) st = cudaEventDestroy(event_);
  if (st != cudaSuccess) device_->RecordDeferred(st, "cudaEventDestroy");
}

void SyncPoint::Wait() {
  CR_CUDA(cudaSetDevice(device_->index));
  // Blocking-sync event: the waiting thread sleeps instead of spinning on a core that JavaScript
  // (preparing the next batch) or the worker may need.
  CR_CUDA(cudaEventSynchronize(event_));
  waited_ = true;
  if (auto deferred = device_->TakeDeferred()) Fail(deferred->first, deferred->second);
  kernels::LabelError e;
  std::memcpy(&e, label_.get(), sizeof e);
  if (!e.set) return;
  // Named as the op was when enqueued (the op and its input shapes), as on the CPU.
  const std::string n = std::to_string(e.rows), k = std::to_string(e.classes);
  const std::string op = std::string(e.op == 0 ? "softmaxCrossEntropy" : "softmaxCrossEntropyBackward") + " [" + n + ", " +
                         k + "] [" + n + "]";
  throw NativeError("cuda", op, "ERR_LABEL_OUT_OF_RANGE",
                    op + ": label " + std::to_string(e.label) + " at row " + std::to_string(e.row) + " is outside [0, " + k +
                        ")");
}

CudaBackend::CudaBackend(Context& ctx) : Backend(ctx) {
  const char* tf = std::getenv("CUDNN_RESNET_TF32");
  if (tf && std::strcmp(tf, "0") == 0) tf32_ = false;
}

CudaBackend::~CudaBackend() {
  // The queue has stopped (~Context): a capture its worker began and never ended ends here, so
  // that the device's teardown does not wait on a capturing stream.
  try {
    EndCapture(false);
  } catch (const NativeError& e) {
    std::fprintf(stderr, "cudnn-resnet: warning: cuda: ending a captured step at teardown: %s\n", e.what());
  }
  graphs_.clear();
  workspace_.reset();
  label_error_mem_.reset();
}

void CudaBackend::UseDevice(int64_t index) {
  if (index == index_) return;
  if (device_) {
    Fail("ERR_DEVICE_IN_USE", "this addon instance already runs on GPU " + std::to_string(index_) +
                                  "; another GPU is served by another instance (backend 'cuda:" + std::to_string(index) + "')");
  }
  index_ = int(index);
  probed_ = false;
  reason_.clear();
}

std::string CudaBackend::Unavailable() {
  if (probed_) return reason_;
  probed_ = true;
  const size_t cudnn_version = cudnnGetVersion();
  if (cudnn_version / 10000 != CUDNN_MAJOR) {
    reason_ = "libcudnn " + CudnnVersion(cudnn_version) + " was loaded, but this addon was built for cuDNN " +
              std::to_string(CUDNN_MAJOR);
    return reason_;
  }
  int count = 0;
  cudaError_t st = cudaGetDeviceCount(&count);
  if (st != cudaSuccess) {
    cudaGetLastError();
    reason_ = ProbeFailure(st);
    return reason_;
  }
  device_count_ = count;
  if (count == 0) {
    reason_ = "no CUDA device (cudaGetDeviceCount returned 0)";
    return reason_;
  }
  if (index_ >= count) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    reason_ = "no CUDA device " + std::to_string(index_) + ": the driver sees " + std::to_string(count) + " GPU" +
              (count == 1 ? "" : "s") + (visible ? std::string(" (CUDA_VISIBLE_DEVICES=") + visible + ")" : std::string());
    return reason_;
  }
  const std::string gpu = "GPU " + std::to_string(index_);
  st = cudaGetDeviceProperties(&props_, index_);
  if (st != cudaSuccess) {
    cudaGetLastError();
    reason_ = ProbeFailure(st);
    return reason_;
  }
  // The build carries sm_80 and sm_90 code and sm_90 PTX: any 8.x or newer GPU can run it.
  if (props_.major < 8) {
    reason_ = gpu + " (" + props_.name + ") has compute capability " + std::to_string(props_.major) + "." +
              std::to_string(props_.minor) + "; this build has code for 8.0 and newer (CMAKE_CUDA_ARCHITECTURES)";
    return reason_;
  }
  // Every buffer comes from cudaMallocAsync; a driver or virtualised GPU without memory pools
  // would fail at the first allocation, so say so here.
  int pools = 0;
  if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, index_) != cudaSuccess || !pools) {
    cudaGetLastError();
    reason_ = gpu + " (" + props_.name + ") does not support stream-ordered memory pools (cudaMallocAsync), "
              "which this backend allocates from";
  }
  return reason_;
}

void CudaBackend::Start() {
  if (device_) return;
  try {
    device_ = std::make_shared<Device>(index_, props_);
    label_error_mem_ = std::make_unique<DeviceMemory>(device_, sizeof(kernels::LabelError));
    label_error_ = static_cast<int*>(label_error_mem_->get());
    CR_CUDA(cudaMemsetAsync(label_error_, 0, sizeof(kernels::LabelError), device_->stream));
  } catch (const NativeError& e) {
    reason_ = "GPU " + std::to_string(index_) + " (" + props_.name + ") could not be set up: " + e.what();
    label_error_mem_.reset();
    label_error_ = nullptr;
    device_.reset();
    throw;
  }
}

Completion CudaBackend::Drain() {
  if (!device_) return nullptr;
  CR_CUDA(cudaSetDevice(device_->index));
  RefuseInCapture("a sync point");
  auto point = std::make_shared<SyncPoint>(device_, label_error_);
  return [point] { point->Wait(); };
}

size_t CudaBackend::WorkspaceCap() {
  // Algorithms that want more than this are passed over for ones that need less: beyond a few
  // hundred MiB the speed-up is small and the memory is better spent on activations.
  static const size_t cap = [] {
    const char* v = std::getenv("CUDNN_RESNET_WORKSPACE_MB");
    long mb = v ? std::strtol(v, nullptr, 10) : 0;
    return size_t(mb > 0 ? mb : 1024) << 20;
  }();
  return cap;
}

void* CudaBackend::Workspace(size_t bytes) {
  if (bytes == 0) return nullptr;
  if (bytes > WorkspaceCap()) return nullptr;
  if (workspace_ && workspace_->bytes() >= bytes) {
    if (device_->capture.Active()) device_->capture.Keep(workspace_.get(), workspace_);
    return workspace_->get();
  }
  if (device_->capture.Active()) return nullptr;
  workspace_.reset();
  try {
    workspace_ = std::make_shared<DeviceMemory>(device_, bytes);
  } catch (const NativeError&) {
    return nullptr;
  }
  return workspace_->get();
}

CudaStoragePtr CudaBackend::Alloc(const std::vector<int64_t>& dims, DType dtype) {
  return std::make_shared<CudaStorage>(device_, dims, dtype);
}

void CudaBackend::Enqueue(std::string task, std::function<void()> work) {
  ctx_.queue.Push(std::move(task), [device = device_, work = std::move(work)] {
    CR_CUDA(cudaSetDevice(device->index));
    CaptureLedger& capture = device->capture;
    if (!capture.Active()) return work();
    // A capture that failed records nothing more: its graph is never made, and the task's work
    // would be recorded, not run.
    if (!capture.failure().empty()) return;
    try {
      work();
    } catch (const std::exception& e) {
      capture.Fail(OpScope::CurrentOp() + ": " + e.what());
      throw;
    }
  });
}

namespace {

// The file libcudnn.so.9 was loaded from (the RUNPATH's, LD_LIBRARY_PATH's, or the one
// lib/backend/load.ts preloaded from python3's nvidia-cudnn wheel), or "" where unknown.
std::string CudnnLibraryPath() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&cudnnGetVersion), &info) == 0 || !info.dli_fname) return "";
  return info.dli_fname;
}

}  // namespace

BackendInfo CudaBackend::Info() {
  const std::string why = Unavailable();
  BackendInfo info;
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  cudaGetLastError();
  info.versions = {{"cudaRuntime", CudaVersion(runtime)},
                   {"cudaDriver", CudaVersion(driver)},
                   {"cudnn", CudnnVersion(cudnnGetVersion())},
                   {"cudnnBuild", CudnnVersion(CUDNN_VERSION)}};
  info.details = {{"tf32", tf32_.load()},
                  {"layout", std::string("NCHW; 4-D bfloat16/float16 NHWC")},
                  {"cudnnLibrary", CudnnLibraryPath()},
                  {"deviceIndex", double(index_)}};
  if (device_count_ >= 0) info.details.emplace_back("deviceCount", double(device_count_));
  if (why.empty()) {
    info.details.emplace_back("device", std::string(props_.name));
    info.details.emplace_back("computeCapability", std::to_string(props_.major) + "." + std::to_string(props_.minor));
    info.details.emplace_back("memoryBytes", double(props_.totalGlobalMem));
    info.details.emplace_back("multiprocessors", double(props_.multiProcessorCount));
    info.details.emplace_back("started", device_ != nullptr);
  }
  return info;
}

// Accepted for the shared surface and checked, but without effect: the worker only launches
// work, and the GPU's parallelism is not a host thread count.
void CudaBackend::SetNumThreads(int) {}

// TF32 tensor-core math for float32 convolutions (on by default, as in PyTorch; the initial
// value comes from CUDNN_RESNET_TF32). Applies to convolutions enqueued after the call.
void CudaBackend::SetTf32(bool enabled) { tf32_ = enabled; }

// Returns the pool's unused blocks to the driver, and the idle pinned staging buffers to the
// system. Blocks freed by work still in flight stay until a later call.
void CudaBackend::EmptyCache() {
  PinnedPool::For(index_).Trim();
  if (!device_) return;
  CR_CUDA(cudaSetDevice(device_->index));
  CR_CUDA(cudaMemPoolTrimTo(device_->pool, 0));
}

// The device pool's reserved bytes not in use (pinned staging buffers are host memory and not
// counted).
int64_t CudaBackend::CachedBytes() {
  uint64_t reserved = 0, used = 0;
  if (device_) {
    CR_CUDA(cudaSetDevice(device_->index));
    CR_CUDA(cudaMemPoolGetAttribute(device_->pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
    CR_CUDA(cudaMemPoolGetAttribute(device_->pool, cudaMemPoolAttrUsedMemCurrent, &used));
  }
  return int64_t(reserved > used ? reserved - used : 0);
}

}  // namespace cr::cuda
