// Moving data in and out of the GPU, reshape, the caching allocator's controls, and info().
#include <cstring>

#include "cuda_context.h"
#include "ops.h"

namespace cr::cuda {

namespace {

Napi::TypedArray NewTypedArray(Napi::Env env, DType dtype, size_t n) {
  if (dtype == DType::kFloat32) return Napi::Float32Array::New(env, n);
  return Napi::Int32Array::New(env, n);
}

void* TypedArrayData(Napi::TypedArray a) {
  return static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
}

// Copies `src` to host memory `dst` and waits, on the worker, for it and for everything queued
// before (Drain also reports a kernel fault or a bad label).
void ReadBack(CudaContext& ctx, const CudaStoragePtr& src, void* dst) {
  CR_CUDA(cudaMemcpyAsync(dst, src->Ptr(), src->bytes, cudaMemcpyDeviceToHost, ctx.device->stream));
  ctx.Drain();
}

Napi::Value Upload(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "upload", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "upload: expected a Float32Array or Int32Array");
    Napi::TypedArray values = info[0].As<Napi::TypedArray>();
    DType dtype;
    if (values.TypedArrayType() == napi_float32_array) dtype = DType::kFloat32;
    else if (values.TypedArrayType() == napi_int32_array) dtype = DType::kInt32;
    else throw Napi::TypeError::New(env, "upload: expected a Float32Array or Int32Array");
    std::vector<int64_t> dims = ShapeArg(info, 1);
    int64_t n = CheckedNumel(env, dims);
    if (static_cast<int64_t>(values.ElementLength()) != n) {
      throw Napi::RangeError::New(env, "upload: " + std::to_string(values.ElementLength()) +
                                           " values do not fill shape " + ShapeString(dims));
    }
    CudaStoragePtr s = Alloc(ctx, dims, dtype);
    // JS may change the array once upload() returns, so its values are copied now.
    auto staging = std::make_shared<std::vector<uint8_t>>(size_t(n) * 4);
    std::memcpy(staging->data(), TypedArrayData(values), staging->size());
    Enqueue(ctx, Describe("upload", {s.get()}), [&ctx, s, staging] {
      // From pageable memory the copy returns once the source is staged, so `staging` may go.
      CR_CUDA(cudaMemcpyAsync(s->Ptr(), staging->data(), staging->size(), cudaMemcpyHostToDevice, ctx.device->stream));
    });
    return WrapStorage(env, s);
  });
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "fill", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    std::vector<int64_t> dims = ShapeArg(info, 0);
    CheckedNumel(env, dims);
    DType dtype = DTypeArg(info, 2);
    double value = FillValueArg(info, 1, dtype);
    uint32_t bits;
    if (dtype == DType::kFloat32) {
      float f = static_cast<float>(value);
      std::memcpy(&bits, &f, 4);
    } else {
      int32_t i = static_cast<int32_t>(value);
      std::memcpy(&bits, &i, 4);
    }
    CudaStoragePtr s = Alloc(ctx, dims, dtype);
    Enqueue(ctx, Describe("fill", {s.get()}), [&ctx, s, bits] {
      CR_CUDA(kernels::Fill(s->Ptr(), bits, s->Numel(), ctx.device->stream));
    });
    return WrapStorage(env, s);
  });
}

Napi::Value ZerosLike(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "zerosLike", [&]() -> Napi::Value {
    CudaContext& ctx = Live(info.Env());
    CudaStoragePtr like = Arg(info.Env(), info[0], "buffer");
    CudaStoragePtr s = Alloc(ctx, like->dims, like->dtype);
    Enqueue(ctx, Describe("zerosLike", {s.get()}), [&ctx, s] {
      CR_CUDA(cudaMemsetAsync(s->Ptr(), 0, s->bytes, ctx.device->stream));
    });
    return WrapStorage(info.Env(), s);
  });
}

Napi::Value Download(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "download", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr s = Arg(env, info[0], "buffer");
    Napi::TypedArray out = NewTypedArray(env, s->dtype, size_t(s->Numel()));
    void* dst = TypedArrayData(out);
    // The typed array is held by the pending promise, so its memory outlives the task.
    return EnqueueReadback(env, Describe("download", {s.get()}), out, [&ctx, s, dst] {
      CR_CUDA(cudaSetDevice(ctx.device->index));
      ReadBack(ctx, s, dst);
    });
  });
}

Napi::Value DownloadSync(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "downloadSync", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr s = Arg(env, info[0], "buffer");
    Napi::TypedArray out = NewTypedArray(env, s->dtype, size_t(s->Numel()));
    void* dst = TypedArrayData(out);
    RunSync(env, Describe("dataSync", {s.get()}), [&ctx, s, dst] {
      CR_CUDA(cudaSetDevice(ctx.device->index));
      ReadBack(ctx, s, dst);
    });
    return out;
  });
}

Napi::Value Reshape(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "reshape", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr s = Arg(env, info[0], "buffer");
    std::vector<int64_t> dims = ShapeArg(info, 1);
    if (CheckedNumel(env, dims) != s->Numel()) {
      throw Napi::RangeError::New(env, "reshape: cannot reshape " + s->ShapeString() + " to " + ShapeString(dims));
    }
    // Every CUDA buffer is plain row-major, so a reshape is a copy of the same bytes.
    CudaStoragePtr out = Alloc(ctx, dims, s->dtype);
    Enqueue(ctx, Describe("reshape", {s.get()}), [&ctx, s, out] {
      CR_CUDA(cudaMemcpyAsync(out->Ptr(), s->Ptr(), s->bytes, cudaMemcpyDeviceToDevice, ctx.device->stream));
    });
    return WrapStorage(env, out);
  });
}

// Accepted for the shared surface and checked, but without effect: the worker only launches
// work, and the GPU's parallelism is not a host thread count.
Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "setNumThreads", [&]() -> Napi::Value {
    int64_t n = IntArg(info, 0, "threads");
    if (n < 1 || n > 1024) throw Napi::RangeError::New(info.Env(), "setNumThreads: expected 1 to 1024 threads, got " + std::to_string(n));
    return info.Env().Undefined();
  });
}

// TF32 tensor-core math for float32 convolutions (on by default, as in PyTorch; the initial
// value comes from CUDNN_RESNET_TF32). Applies to convolutions enqueued after the call.
Napi::Value SetTf32(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "setTf32", [&]() -> Napi::Value {
    AnyCtx(info.Env()).tf32 = BoolArg(info, 0, "enabled");
    return info.Env().Undefined();
  });
}

// Returns the pool's unused blocks to the driver. Blocks freed by work still in flight stay
// until a later call.
Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "emptyCache", [&]() -> Napi::Value {
    CudaContext& ctx = AnyCtx(info.Env());
    if (ctx.device) CR_CUDA(cudaMemPoolTrimTo(ctx.device->pool, 0));
    return info.Env().Undefined();
  });
}

Napi::Value CachedBytes(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "cachedBytes", [&]() -> Napi::Value {
    CudaContext& ctx = AnyCtx(info.Env());
    uint64_t reserved = 0, used = 0;
    if (ctx.device) {
      CR_CUDA(cudaMemPoolGetAttribute(ctx.device->pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
      CR_CUDA(cudaMemPoolGetAttribute(ctx.device->pool, cudaMemPoolAttrUsedMemCurrent, &used));
    }
    return Napi::Number::New(info.Env(), double(reserved > used ? reserved - used : 0));
  });
}

std::string CudaVersion(int v) {
  if (v <= 0) return "none";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string CudnnVersion(size_t v) {
  return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100);
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CudaContext& ctx = AnyCtx(env);
  Napi::Object o = Napi::Object::New(env);
  o.Set("backend", "cuda");
  o.Set("available", ctx.device != nullptr);
  if (!ctx.device) o.Set("reason", ctx.reason);
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  Napi::Object versions = Napi::Object::New(env);
  versions.Set("cudaRuntime", CudaVersion(runtime));
  versions.Set("cudaDriver", CudaVersion(driver));
  versions.Set("cudnn", CudnnVersion(cudnnGetVersion()));
  versions.Set("cudnnBuild", CudnnVersion(CUDNN_VERSION));
  o.Set("versions", versions);
  o.Set("tf32", ctx.tf32.load());
  o.Set("layout", "NCHW");
  if (ctx.device) {
    const cudaDeviceProp& p = ctx.device->props;
    o.Set("device", p.name);
    o.Set("computeCapability", std::to_string(p.major) + "." + std::to_string(p.minor));
    o.Set("memoryBytes", double(p.totalGlobalMem));
    o.Set("multiprocessors", p.multiProcessorCount);
  }
  return o;
}

}  // namespace

void RegisterBuffers(Napi::Env env, Napi::Object exports) {
  exports.Set("upload", Napi::Function::New(env, Upload, "upload"));
  exports.Set("fill", Napi::Function::New(env, Fill, "fill"));
  exports.Set("zerosLike", Napi::Function::New(env, ZerosLike, "zerosLike"));
  exports.Set("download", Napi::Function::New(env, Download, "download"));
  exports.Set("downloadSync", Napi::Function::New(env, DownloadSync, "downloadSync"));
  exports.Set("reshape", Napi::Function::New(env, Reshape, "reshape"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("setTf32", Napi::Function::New(env, SetTf32, "setTf32"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache, "emptyCache"));
  exports.Set("cachedBytes", Napi::Function::New(env, CachedBytes, "cachedBytes"));
}

}  // namespace cr::cuda
