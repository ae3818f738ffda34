// Moving data in and out of the backend, and the layout-only ops (reshape).
#include <omp.h>

#include <cstring>

#include "cpu_context.h"
#include "host_pool.h"
#include "ops.h"

namespace cr::cpu {

namespace {

Napi::TypedArray NewTypedArray(Napi::Env env, DType dtype, size_t n) {
  if (dtype == DType::kFloat32) return Napi::Float32Array::New(env, n);
  return Napi::Int32Array::New(env, n);
}

void* TypedArrayData(Napi::TypedArray a) {
  return static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
}

// Copies `src` into `dst` in plain row-major order, reordering when `src` is blocked.
void ReadPlain(CpuContext& ctx, const CpuStoragePtr& src, void* dst) {
  Desc plain = PlainDesc(src->dims, src->dtype);
  if (src->md == plain) {
    std::memcpy(dst, src->data, src->md.get_size());
    return;
  }
  memory from = Mem(ctx, *src), to(plain, ctx.engine, dst);
  CR_DNNL(dnnl::reorder(from, to).execute(ctx.stream, from, to));
}

Napi::Value Upload(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "upload", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
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
    CpuStoragePtr s = Alloc(dims, dtype, PlainDesc(dims, dtype));
    std::memcpy(s->data, TypedArrayData(values), size_t(n) * 4);
    return WrapStorage(env, s);
  });
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "fill", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    std::vector<int64_t> dims = ShapeArg(info, 0);
    CheckedNumel(env, dims);
    DType dtype = DTypeArg(info, 2);
    double value = FillValueArg(info, 1, dtype);
    CpuStoragePtr s = Alloc(dims, dtype, PlainDesc(dims, dtype));
    Ctx(env).queue.Push(Describe("fill", {s.get()}), [s, value, dtype] {
      int64_t n = s->Numel();
      if (dtype == DType::kFloat32) {
        float* p = static_cast<float*>(s->data);
        float v = static_cast<float>(value);
        for (int64_t i = 0; i < n; ++i) p[i] = v;
      } else {
        int32_t* p = static_cast<int32_t*>(s->data);
        int32_t v = static_cast<int32_t>(value);
        for (int64_t i = 0; i < n; ++i) p[i] = v;
      }
    });
    return WrapStorage(env, s);
  });
}

Napi::Value ZerosLike(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "zerosLike", [&]() -> Napi::Value {
    CpuStoragePtr like = Arg(info.Env(), info[0], "buffer");
    CpuStoragePtr s = Alloc(like->dims, like->dtype, like->md);
    Ctx(info.Env()).queue.Push(Describe("zerosLike", {s.get()}), [s] { std::memset(s->data, 0, s->bytes); });
    return WrapStorage(info.Env(), s);
  });
}

Napi::Value Download(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "download", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr s = Arg(env, info[0], "buffer");
    Napi::TypedArray out = NewTypedArray(env, s->dtype, size_t(s->Numel()));
    void* dst = TypedArrayData(out);
    // The typed array is held by the pending promise, so its memory outlives the task.
    return EnqueueReadback(env, Describe("download", {s.get()}), out, [&ctx, s, dst] { ReadPlain(ctx, s, dst); });
  });
}

Napi::Value DownloadSync(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "downloadSync", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr s = Arg(env, info[0], "buffer");
    Napi::TypedArray out = NewTypedArray(env, s->dtype, size_t(s->Numel()));
    void* dst = TypedArrayData(out);
    RunSync(env, Describe("dataSync", {s.get()}), [&ctx, s, dst] { ReadPlain(ctx, s, dst); });
    return out;
  });
}

Napi::Value Reshape(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "reshape", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr s = Arg(env, info[0], "buffer");
    std::vector<int64_t> dims = ShapeArg(info, 1);
    if (CheckedNumel(env, dims) != s->Numel()) {
      throw Napi::RangeError::New(env, "reshape: cannot reshape " + s->ShapeString() + " to " + ShapeString(dims));
    }
    CpuStoragePtr out = Alloc(dims, s->dtype, PlainDesc(dims, s->dtype));
    ctx.queue.Push(Describe("reshape", {s.get()}), [&ctx, s, out] { ReadPlain(ctx, s, out->data); });
    return WrapStorage(env, out);
  });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "setNumThreads", [&]() -> Napi::Value {
    int64_t n = IntArg(info, 0, "threads");
    if (n < 1 || n > 1024) throw Napi::RangeError::New(info.Env(), "setNumThreads: expected 1 to 1024 threads, got " + std::to_string(n));
    // OpenMP's thread count is a property of the thread that starts parallel regions: the worker.
    Ctx(info.Env()).queue.Push("setNumThreads", [n] { omp_set_num_threads(int(n)); });
    return info.Env().Undefined();
  });
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  HostPool::Instance().Clear();
  return info.Env().Undefined();
}

Napi::Value CachedBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(HostPool::Instance().CachedBytes()));
}

const char* IsaName(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const dnnl_version_t* v = dnnl_version();
  Napi::Object o = Napi::Object::New(env);
  o.Set("backend", "cpu");
  o.Set("available", true);
  Napi::Object versions = Napi::Object::New(env);
  versions.Set("onednn", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
  versions.Set("openmp", std::to_string(_OPENMP));
  o.Set("versions", versions);
  o.Set("isa", IsaName(dnnl::get_effective_cpu_isa()));
  o.Set("maxThreads", omp_get_max_threads());
  o.Set("cachedPrimitives", double(Ctx(env).CacheSize()));
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
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache, "emptyCache"));
  exports.Set("cachedBytes", Napi::Function::New(env, CachedBytes, "cachedBytes"));
}

}  // namespace cr::cpu
