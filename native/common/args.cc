#include "args.h"

#include <cmath>

#include "context.h"
#include "errors.h"

namespace cr {

namespace {

Napi::Value At(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() ? info[i] : info.Env().Undefined();
}

[[noreturn]] void BadArg(const Napi::CallbackInfo& info, const char* name, const char* expected) {
  throw Napi::TypeError::New(info.Env(), OpScope::CurrentOp() + ": expected " + name + " to be " + expected);
}

}  // namespace

int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = At(info, i);
  if (!v.IsNumber()) BadArg(info, name, "an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740991.0) {
    BadArg(info, name, "an integer");
  }
  return static_cast<int64_t>(d);
}

double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = At(info, i);
  if (!v.IsNumber()) BadArg(info, name, "a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) BadArg(info, name, "a finite number");
  return d;
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = At(info, i);
  if (!v.IsBoolean()) BadArg(info, name, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::vector<int64_t> IntsArg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t n) {
  Napi::Value v = At(info, i);
  if (!v.IsArray()) BadArg(info, name, "an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() != n) BadArg(info, name, ("an array of " + std::to_string(n) + " integers").c_str());
  std::vector<int64_t> out(n);
  for (uint32_t k = 0; k < n; ++k) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber()) BadArg(info, name, "an array of integers");
    double d = e.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 2147483647.0) {
      BadArg(info, name, "an array of integers of magnitude below 2^31");
    }
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

std::vector<int64_t> ShapeArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = At(info, i);
  if (!v.IsArray()) throw Napi::TypeError::New(info.Env(), OpScope::CurrentOp() + ": expected a shape array");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > 5) throw Napi::RangeError::New(info.Env(), OpScope::CurrentOp() + ": rank above 5");
  return IntsArg(info, i, "shape", a.Length());
}

double FillValueArg(const Napi::CallbackInfo& info, size_t i, DType dtype) {
  double v = NumberArg(info, i, "value");
  if (dtype == DType::kInt32 && (std::floor(v) != v || v < -2147483648.0 || v > 2147483647.0)) {
    BadArg(info, "value", "an integer in the int32 range");
  }
  return v;
}

int64_t CheckedNumel(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 1) ThrowRangeError(OpScope::CurrentOp() + ": dimensions must be positive, got " + ShapeString(dims));
    if (n > kMaxNumel / d) ThrowRangeError(OpScope::CurrentOp() + ": shape " + ShapeString(dims) + " is too large");
    n *= d;
  }
  return n;
}

StoragePtr TensorArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return UnwrapStorage(info.Env(), At(info, i), what);
}

StoragePtr OptionalTensorArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = At(info, i);
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  return UnwrapStorage(info.Env(), v, what);
}

std::vector<StoragePtr> TensorListArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = At(info, i);
  if (!v.IsArray()) {
    throw Napi::TypeError::New(info.Env(), OpScope::CurrentOp() + ": expected " + what + " to be an array of buffers");
  }
  Napi::Array a = v.As<Napi::Array>();
  std::vector<StoragePtr> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) out.push_back(UnwrapStorage(info.Env(), a.Get(k), what));
  return out;
}

DType DTypeArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = At(info, i);
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  for (DType d : {DType::kFloat32, DType::kInt32, DType::kBFloat16, DType::kFloat16}) {
    if (s == DTypeName(d)) return d;
  }
  throw Napi::TypeError::New(info.Env(), OpScope::CurrentOp() + ": dtype must be 'float32', 'int32', 'bfloat16' or 'float16'");
}

Napi::Array Tuple(Napi::Env env, std::initializer_list<Napi::Value> values) {
  Napi::Array a = Napi::Array::New(env, values.size());
  uint32_t i = 0;
  for (const Napi::Value& v : values) a.Set(i++, v);
  return a;
}

}  // namespace cr
