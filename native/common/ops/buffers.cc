// Moving data in and out of a backend, buffer handles, and reshape.
#include "../args.h"
#include "../context.h"
#include "registry.h"

namespace cr::ops {

namespace {

Napi::TypedArray NewTypedArray(Napi::Env env, DType dtype, size_t n) {
  if (dtype == DType::kFloat32) return Napi::Float32Array::New(env, n);
  return Napi::Int32Array::New(env, n);
}

void* TypedArrayData(Napi::TypedArray a) {
  return static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
}

}  // namespace

// upload(values: Float32Array | Int32Array, shape) -> buffer
Napi::Value Upload(const Napi::CallbackInfo& info) {
  return Entry(info, "upload", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    if (info.Length() < 1 || !info[0].IsTypedArray()) ThrowTypeError("upload: expected a Float32Array or Int32Array");
    Napi::TypedArray values = info[0].As<Napi::TypedArray>();
    UploadArgs a;
    if (values.TypedArrayType() == napi_float32_array) {
      a.dtype = DType::kFloat32;
    } else if (values.TypedArrayType() == napi_int32_array) {
      a.dtype = DType::kInt32;
    } else {
      ThrowTypeError("upload: expected a Float32Array or Int32Array");
    }
    a.dims = ShapeArg(info, 1);
    const int64_t n = CheckedNumel(a.dims);
    if (static_cast<int64_t>(values.ElementLength()) != n) {
      ThrowRangeError("upload: " + std::to_string(values.ElementLength()) + " values do not fill shape " + ShapeString(a.dims));
    }
    a.values = TypedArrayData(values);
    a.task = "upload " + ShapeString(a.dims);
    return WrapStorage(env, backend.Upload(a));
  });
}

// fill(shape, value, dtype) -> buffer
Napi::Value Fill(const Napi::CallbackInfo& info) {
  return Entry(info, "fill", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    FillArgs a;
    a.dims = ShapeArg(info, 0);
    CheckedNumel(a.dims);
    a.dtype = DTypeArg(info, 2);
    a.value = FillValueArg(info, 1, a.dtype);
    a.task = "fill " + ShapeString(a.dims);
    return WrapStorage(info.Env(), backend.Fill(a));
  });
}

// zerosLike(buffer) -> a buffer of its shape, type and layout, all zeros
Napi::Value ZerosLike(const Napi::CallbackInfo& info) {
  return Entry(info, "zerosLike", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    StoragePtr like = TensorArg(info, 0, "buffer");
    OpArgs a;
    a.dtype = like->dtype;
    a.task = Describe("zerosLike", {like.get()});
    return WrapStorage(info.Env(), backend.ZerosLike(a, like));
  });
}

// download(buffer) -> Promise<Float32Array | Int32Array>, plain row-major
Napi::Value Download(const Napi::CallbackInfo& info) {
  return Entry(info, "download", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    StoragePtr s = TensorArg(info, 0, "buffer");
    Napi::TypedArray out = NewTypedArray(env, s->dtype, size_t(s->Numel()));
    void* dst = TypedArrayData(out);
    // The typed array is held by the pending promise, so its memory outlives the task.
    return EnqueueReadback(env, Describe("download", {s.get()}), out, [&backend, s, dst] { return backend.ReadPlain(s, dst); });
  });
}

// downloadSync(buffer) -> Float32Array | Int32Array, blocking the JS thread
Napi::Value DownloadSync(const Napi::CallbackInfo& info) {
  return Entry(info, "downloadSync", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    StoragePtr s = TensorArg(info, 0, "buffer");
    Napi::TypedArray out = NewTypedArray(env, s->dtype, size_t(s->Numel()));
    void* dst = TypedArrayData(out);
    RunSync(env, Describe("dataSync", {s.get()}), [&backend, s, dst] { return backend.ReadPlain(s, dst); });
    return out;
  });
}

// reshape(buffer, shape) -> a new buffer with the same values in row-major order
Napi::Value Reshape(const Napi::CallbackInfo& info) {
  return Entry(info, "reshape", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    ReshapeArgs a;
    a.x = TensorArg(info, 0, "buffer");
    a.dims = ShapeArg(info, 1);
    if (CheckedNumel(a.dims) != a.x->Numel()) {
      ThrowRangeError("reshape: cannot reshape " + a.x->ShapeString() + " to " + ShapeString(a.dims));
    }
    a.dtype = a.x->dtype;
    a.task = Describe("reshape", {a.x.get()});
    return WrapStorage(info.Env(), backend.Reshape(a));
  });
}

// release(buffer): drops this handle's reference; the memory goes when no queued op needs it.
Napi::Value Release(const Napi::CallbackInfo& info) {
  return Entry(info, "release", [&]() -> Napi::Value {
    ReleaseHandle(info.Env(), info.Length() > 0 ? info[0] : info.Env().Undefined());
    return info.Env().Undefined();
  });
}

// share(buffer) -> a second handle to the same memory
Napi::Value Share(const Napi::CallbackInfo& info) {
  return Entry(info, "share", [&]() -> Napi::Value { return WrapStorage(info.Env(), TensorArg(info, 0, "buffer")); });
}

Napi::Value ShapeOf(const Napi::CallbackInfo& info) {
  return Entry(info, "shapeOf", [&]() -> Napi::Value {
    StoragePtr s = TensorArg(info, 0, "buffer");
    Napi::Array dims = Napi::Array::New(info.Env(), s->dims.size());
    for (size_t i = 0; i < s->dims.size(); ++i) dims.Set(i, Napi::Number::New(info.Env(), double(s->dims[i])));
    return dims;
  });
}

}  // namespace cr::ops
