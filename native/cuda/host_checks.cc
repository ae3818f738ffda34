// Test-only functions that need no GPU: what cuDNN's descriptors compute on the host (output
// shapes of convolutions and pooling), and the kernels' arithmetic (kernels/math.cuh) run on the
// CPU. They let a machine without a GPU check the parts of the backend it can, against the
// TypeScript layer's shapes and the CPU backend's values. Not part of the Binding surface.
#include <cstring>

#include "../common/args.h"
#include "cuda_backend.h"
#include "host_checks.h"
#include "kernels/math.cuh"
#include "pool2d.h"

namespace cr::cuda {

namespace {

Napi::Array Dims(Napi::Env env, std::initializer_list<int> dims) {
  Napi::Array a = Napi::Array::New(env, dims.size());
  uint32_t i = 0;
  for (int d : dims) a.Set(i++, Napi::Number::New(env, d));
  return a;
}

template <typename T>
T* Data(Napi::TypedArray a) {
  return reinterpret_cast<T*>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

Napi::Float32Array Floats(const Napi::CallbackInfo& info, size_t i, const char* what, size_t n) {
  if (i >= info.Length() || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
      info[i].As<Napi::TypedArray>().ElementLength() != n) {
    throw Napi::TypeError::New(info.Env(), OpScope::CurrentOp() + ": expected " + what + " to be a Float32Array of " +
                                               std::to_string(n) + " values");
  }
  return info[i].As<Napi::Float32Array>();
}

Napi::Float32Array Copy(Napi::Env env, Napi::Float32Array a) {
  Napi::Float32Array out = Napi::Float32Array::New(env, a.ElementLength());
  std::memcpy(Data<float>(out), Data<float>(a), a.ElementLength() * sizeof(float));
  return out;
}

// hostDescribeConv2d(xShape, wShape, stride, padding, dilation, groups) -> cuDNN's output dims
Napi::Value DescribeConv2d(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostDescribeConv2d", [&]() -> Napi::Value {
    std::vector<int64_t> x = IntsArg(info, 0, "input shape", 4), w = IntsArg(info, 1, "weight shape", 4);
    std::vector<int64_t> s = IntsArg(info, 2, "stride", 2), p = IntsArg(info, 3, "padding", 2),
                         d = IntsArg(info, 4, "dilation", 2);
    int64_t groups = IntArg(info, 5, "groups");
    if (groups < 1 || groups > INT32_MAX) throw Napi::RangeError::New(info.Env(), "hostDescribeConv2d: groups must be positive");
    TensorDesc xd;
    FilterDesc wd;
    ConvDesc cd;
    SetTensor4d(xd, x);
    CR_CUDNN(cudnnSetFilter4dDescriptor(wd.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, int(w[0]), int(w[1]), int(w[2]), int(w[3])));
    CR_CUDNN(cudnnSetConvolution2dDescriptor(cd.get(), int(p[0]), int(p[1]), int(s[0]), int(s[1]), int(d[0]), int(d[1]),
                                             CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CR_CUDNN(cudnnSetConvolutionGroupCount(cd.get(), int(groups)));
    int n, c, h, wo;
    CR_CUDNN(cudnnGetConvolution2dForwardOutputDim(cd.get(), xd.get(), wd.get(), &n, &c, &h, &wo));
    return Dims(info.Env(), {n, c, h, wo});
  });
}

// hostDescribePool2d(xShape, kernel, stride, padding, 'max' | 'avg') -> cuDNN's output dims
Napi::Value DescribePool2d(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostDescribePool2d", [&]() -> Napi::Value {
    std::vector<int64_t> x = IntsArg(info, 0, "input shape", 4);
    std::vector<int64_t> k = IntsArg(info, 1, "kernel", 2), s = IntsArg(info, 2, "stride", 2), p = IntsArg(info, 3, "padding", 2);
    std::string mode = info.Length() > 4 && info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "";
    if (mode != "max" && mode != "avg") throw Napi::TypeError::New(info.Env(), "hostDescribePool2d: mode must be 'max' or 'avg'");
    TensorDesc xd;
    PoolDesc pd;
    SetTensor4d(xd, x);
    SetPool(pd, mode == "max" ? PoolMode::kMax : PoolMode::kAvg, k, s, p);
    int n, c, h, w;
    CR_CUDNN(cudnnGetPooling2dForwardOutputDim(pd.get(), xd.get(), &n, &c, &h, &w));
    return Dims(info.Env(), {n, c, h, w});
  });
}

// hostSoftmaxCrossEntropy(logits, labels, n, k, smoothing) -> [loss, probs]
Napi::Value SoftmaxXent(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostSoftmaxCrossEntropy", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const int64_t n = IntArg(info, 2, "n"), k = IntArg(info, 3, "k");
    const double smoothing = NumberArg(info, 4, "smoothing");
    if (n < 1 || k < 1 || n * k > (int64_t(1) << 28)) throw Napi::RangeError::New(env, "hostSoftmaxCrossEntropy: bad n or k");
    Napi::Float32Array logits = Floats(info, 0, "logits", size_t(n * k));
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        info[1].As<Napi::TypedArray>().ElementLength() != size_t(n)) {
      throw Napi::TypeError::New(env, "hostSoftmaxCrossEntropy: expected labels to be an Int32Array of n values");
    }
    const int32_t* labels = Data<int32_t>(info[1].As<Napi::TypedArray>());
    Napi::Float32Array probs = Napi::Float32Array::New(env, size_t(n * k));
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (labels[i] < 0 || labels[i] >= k) throw Napi::RangeError::New(env, "hostSoftmaxCrossEntropy: label out of range");
      total += math::SoftmaxXentRow(Data<float>(logits) + i * k, k, labels[i], smoothing, Data<float>(probs) + i * k);
    }
    return Tuple(env, {Napi::Number::New(env, double(float(total / double(n)))), probs});
  });
}

// hostSoftmaxCrossEntropyBackward(probs, labels, n, k, smoothing, dloss) -> dlogits
Napi::Value SoftmaxXentBackward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostSoftmaxCrossEntropyBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const int64_t n = IntArg(info, 2, "n"), k = IntArg(info, 3, "k");
    const double smoothing = NumberArg(info, 4, "smoothing");
    const double dloss = NumberArg(info, 5, "dloss");
    if (n < 1 || k < 1 || n * k > (int64_t(1) << 28)) throw Napi::RangeError::New(env, "hostSoftmaxCrossEntropyBackward: bad n or k");
    Napi::Float32Array probs = Floats(info, 0, "probs", size_t(n * k));
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        info[1].As<Napi::TypedArray>().ElementLength() != size_t(n)) {
      throw Napi::TypeError::New(env, "hostSoftmaxCrossEntropyBackward: expected labels to be an Int32Array of n values");
    }
    const int32_t* labels = Data<int32_t>(info[1].As<Napi::TypedArray>());
    Napi::Float32Array dx = Napi::Float32Array::New(env, size_t(n * k));
    // As the kernel does: dloss read as float32, divided by N in double.
    const double scale = double(float(dloss)) / double(n);
    for (int64_t i = 0; i < n * k; ++i) {
      Data<float>(dx)[i] = math::SoftmaxXentGrad(Data<float>(probs)[i], i % k == labels[i / k], k, smoothing, scale);
    }
    return dx;
  });
}

// hostSgdStep(param, grad, buf | null, lr, momentum, weightDecay, nesterov, first) -> [param', buf' | null]
Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostSgdStep", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "hostSgdStep: expected a Float32Array param");
    const size_t n = info[0].As<Napi::TypedArray>().ElementLength();
    Napi::Float32Array p = Copy(env, Floats(info, 0, "param", n));
    Napi::Float32Array g = Floats(info, 1, "grad", n);
    const bool has_buf = info.Length() > 2 && !info[2].IsNull();
    Napi::Float32Array b = has_buf ? Copy(env, Floats(info, 2, "buf", n)) : Napi::Float32Array();
    math::SgdHyper h{float(NumberArg(info, 3, "lr")), float(NumberArg(info, 4, "momentum")),
                     float(NumberArg(info, 5, "weightDecay")), BoolArg(info, 6, "nesterov"), BoolArg(info, 7, "first")};
    for (size_t i = 0; i < n; ++i) {
      math::SgdElement(Data<float>(p) + i, Data<float>(g)[i], has_buf ? Data<float>(b) + i : nullptr, h);
    }
    return Tuple(env, {p, has_buf ? Napi::Value(b) : env.Null()});
  });
}

// hostElementwise('relu' | 'reluBackward' | 'add' | 'addRelu', a, b | null) -> result
Napi::Value Elementwise(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostElementwise", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    std::string op = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    if (info.Length() < 2 || !info[1].IsTypedArray()) throw Napi::TypeError::New(env, "hostElementwise: expected a Float32Array");
    const size_t n = info[1].As<Napi::TypedArray>().ElementLength();
    const float* a = Data<float>(Floats(info, 1, "a", n));
    Napi::Float32Array out = Napi::Float32Array::New(env, n);
    float* y = Data<float>(out);
    if (op == "relu") {
      for (size_t i = 0; i < n; ++i) y[i] = math::Relu(a[i]);
      return out;
    }
    const float* b = Data<float>(Floats(info, 2, "b", n));
    if (op == "reluBackward") {
      for (size_t i = 0; i < n; ++i) y[i] = math::ReluGrad(a[i], b[i]);
    } else if (op == "add") {
      for (size_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
    } else if (op == "addRelu") {
      for (size_t i = 0; i < n; ++i) y[i] = math::AddRelu(a[i], b[i]);
    } else {
      throw Napi::TypeError::New(env, "hostElementwise: unknown op '" + op + "'");
    }
    return out;
  });
}

// hostNccl() -> { available, reason, version }: whether the collectives can open NCCL here.
Napi::Value NcclStatus(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostNccl", [&]() -> Napi::Value {
    int version = 0;
    const std::string why = NcclUnavailable(version);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("available", Napi::Boolean::New(info.Env(), why.empty()));
    o.Set("reason", Napi::String::New(info.Env(), why));
    o.Set("version", Napi::Number::New(info.Env(), version));
    return o;
  });
}

}  // namespace

void RegisterHostChecks(Napi::Env env, Napi::Object exports) {
  exports.Set("hostNccl", Napi::Function::New(env, NcclStatus, "hostNccl"));
  exports.Set("hostDescribeConv2d", Napi::Function::New(env, DescribeConv2d, "hostDescribeConv2d"));
  exports.Set("hostDescribePool2d", Napi::Function::New(env, DescribePool2d, "hostDescribePool2d"));
  exports.Set("hostSoftmaxCrossEntropy", Napi::Function::New(env, SoftmaxXent, "hostSoftmaxCrossEntropy"));
  exports.Set("hostSoftmaxCrossEntropyBackward", Napi::Function::New(env, SoftmaxXentBackward, "hostSoftmaxCrossEntropyBackward"));
  exports.Set("hostSgdStep", Napi::Function::New(env, SgdStep, "hostSgdStep"));
  exports.Set("hostElementwise", Napi::Function::New(env, Elementwise, "hostElementwise"));
}

}  // namespace cr::cuda
