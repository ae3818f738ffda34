// Moving data in and out of a backend, buffer handles, reshape and casts between floating types.
#include <memory>
#include <vector>

#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "../half.h"
#include "registry.h"

namespace cr::ops {

namespace {

// What a readback hands to JS: Int32Array for int32, Float32Array for every floating type (half
// precision converted).
Napi::TypedArray NewTypedArray(Napi::Env env, DType dtype, size_t n) {
  if (dtype == DType::kInt32) return Napi::Int32Array::New(env, n);
  return Napi::Float32Array::New(env, n);
}

void* TypedArrayData(Napi::TypedArray a) {
  return static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
}

// Runs on the worker: s's values in plain row-major order into `dst` (the typed array of
// NewTypedArray), through a host copy in s's own type when that is half precision, converted once
// the backend's copy has finished (after its Completion, when it returns one).
Completion ReadInto(Backend& backend, const StoragePtr& s, void* dst) {
  if (DTypeSize(s->dtype) == 4) return backend.ReadPlain(s, dst);
  auto half = std::make_shared<std::vector<uint16_t>>(size_t(s->Numel()));
  const Completion copied = backend.ReadPlain(s, half->data());
  const Completion convert = [half, dst, n = s->Numel(), dtype = s->dtype] {
    ConvertToFloat(half->data(), static_cast<float*>(dst), n, dtype);
  };
  if (!copied) {
    convert();
    return nullptr;
  }
  return [copied, convert] {
    copied();
    convert();
  };
}

}  // namespace

// upload(values: Float32Array | Int32Array, shape, dtype?) -> buffer. A Float32Array uploads as
// float32 or, converted, as bfloat16 or float16; an Int32Array as int32.
Napi::Value Upload(const Napi::CallbackInfo& info) {
  return Entry(info, "upload", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    // Its pinned staging and the copy stream's event live outside any graph: make the tensor
    // before the step, or pass it in as an input.
    Ctx(env).RefuseInCapture("upload", "an upload from JavaScript memory");
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
    std::vector<uint16_t> half;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      const DType want = DTypeArg(info, 2);
      if (want != a.dtype && !(a.dtype == DType::kFloat32 && IsFloating(want))) {
        ThrowTypeError(std::string("upload: cannot upload an ") + (a.dtype == DType::kInt32 ? "Int32Array" : "Float32Array") +
                       " as " + DTypeName(want));
      }
      if (want != a.dtype) {
        half.resize(size_t(n));
        ConvertFromFloat(static_cast<const float*>(a.values), half.data(), n, want);
        a.values = half.data();
        a.dtype = want;
      }
    }
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

// download(buffer) -> Promise<Float32Array | Int32Array>, plain row-major, half precision as float32
Napi::Value Download(const Napi::CallbackInfo& info) {
  return Entry(info, "download", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    StoragePtr s = TensorArg(info, 0, "buffer");
    Napi::TypedArray out = NewTypedArray(env, s->dtype, size_t(s->Numel()));
    void* dst = TypedArrayData(out);
    // The typed array is held by the pending promise, so its memory outlives the task.
    return EnqueueReadback(env, Describe("download", {s.get()}), out, [&backend, s, dst] { return ReadInto(backend, s, dst); });
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
    RunSync(env, Describe("dataSync", {s.get()}), [&backend, s, dst] { return ReadInto(backend, s, dst); });
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

// cast(buffer, dtype) -> a new buffer of the values in `dtype` (float32, bfloat16 or float16)
Napi::Value Cast(const Napi::CallbackInfo& info) {
  return Entry(info, "cast", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    CastArgs a;
    a.x = TensorArg(info, 0, "buffer");
    RequireFloat(*a.x, "buffer");
    a.dtype = DTypeArg(info, 1);
    if (!IsFloating(a.dtype)) ThrowTypeError("cast: cannot cast to int32");
    a.task = Describe("cast", {a.x.get()});
    return WrapStorage(info.Env(), backend.Cast(a));
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
