// Test-only functions that need no GPU, so that a machine without one tests what it can of the
// backend with the backend's own code:
// - the plans the ops build (conv2d.cc, pool2d.cc, batch_norm.cc) from the geometry the front end
//   reads, with every descriptor field read back from cuDNN, which runs these calls on the host,
//   in float32 and in the half types' NHWC layout, and batch norm's choice of a fused tail;
// - the conversions of type and layout behind uploads, readbacks, reshapes and casts;
// - the convolution's choice of algorithm (candidates from a ranking, the walk to the first one
//   that runs) against a simulated cuDNN;
// - the memory bookkeeping of captured steps (capture_ledger.h): deferred frees, kept buffers;
// - the kernels (kernels/), by running their per-thread code on the CPU over the grid their launch
//   would have, so that indexing, launch sizes, the SGD chunks and the softmax block reduction
//   are tested too, not only the arithmetic, in float32 and in the half types (stored as the
//   backend stores them, read back as it reads them); an index visited twice or never is an
//   error.
// Not part of the Binding surface.
#include <cstring>
#include <map>
#include <stdexcept>

#include "../common/args.h"
#include "../common/ops/geometry.h"
#include "batch_norm.h"
#include "conv2d.h"
#include "cuda_backend.h"
#include "host_checks.h"
#include "kernels/common.cuh"
#include "pool2d.h"

namespace cr::cuda {

namespace {

Napi::Array Ints(Napi::Env env, std::initializer_list<int64_t> values) {
  Napi::Array a = Napi::Array::New(env, values.size());
  uint32_t i = 0;
  for (int64_t v : values) a.Set(i++, Napi::Number::New(env, double(v)));
  return a;
}

Napi::Array Ints(Napi::Env env, const std::vector<int64_t>& values) {
  Napi::Array a = Napi::Array::New(env, values.size());
  for (uint32_t i = 0; i < values.size(); ++i) a.Set(i, Napi::Number::New(env, double(values[i])));
  return a;
}

template <typename T>
T* Data(Napi::TypedArray a) {
  return reinterpret_cast<T*>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

Napi::Float32Array Floats(Napi::Value v, const std::string& what, size_t n) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
      v.As<Napi::TypedArray>().ElementLength() != n) {
    ThrowTypeError(OpScope::CurrentOp() + ": expected " + what + " to be a Float32Array of " + std::to_string(n) + " values");
  }
  return v.As<Napi::Float32Array>();
}

const int32_t* Labels(Napi::Value v, size_t n) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      v.As<Napi::TypedArray>().ElementLength() != n) {
    ThrowTypeError(OpScope::CurrentOp() + ": expected labels to be an Int32Array of n values");
  }
  return Data<int32_t>(v.As<Napi::TypedArray>());
}

Napi::Float32Array CopyOf(Napi::Env env, Napi::Float32Array a) {
  Napi::Float32Array out = Napi::Float32Array::New(env, a.ElementLength());
  std::memcpy(Data<float>(out), Data<float>(a), a.ElementLength() * sizeof(float));
  return out;
}

// A new array of n NaNs: an element the emulated kernel leaves unwritten stays NaN.
Napi::Float32Array Poisoned(Napi::Env env, size_t n) {
  Napi::Float32Array out = Napi::Float32Array::New(env, n);
  for (size_t i = 0; i < n; ++i) Data<float>(out)[i] = NAN;
  return out;
}

// Runs f(i) over [0, n) as kernels::Map's launch would: Blocks(n) blocks of kThreads threads,
// each visiting the indices GridStride gives it.
template <typename F>
void EmulateMap(int64_t n, F f) {
  std::vector<uint8_t> visits(size_t(n), 0);
  const int64_t blocks = kernels::Blocks(n);
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t t = 0; t < kernels::kThreads; ++t) {
      kernels::GridStride(n, b, blocks, t, [&](int64_t i) {
        if (i < 0 || i >= n || visits[size_t(i)]++) {
          throw std::logic_error("index " + std::to_string(i) + " visited twice or out of range");
        }
        f(i);
      });
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (!visits[size_t(i)]) throw std::logic_error("index " + std::to_string(i) + " of " + std::to_string(n) + " never visited");
  }
}

const char* CudnnTypeName(cudnnDataType_t type) {
  switch (type) {
    case CUDNN_DATA_FLOAT:
      return "float";
    case CUDNN_DATA_HALF:
      return "half";
    case CUDNN_DATA_BFLOAT16:
      return "bfloat16";
    default:
      return "?";
  }
}

std::string DescString(const TensorDesc& d) {
  cudnnDataType_t type;
  int n, c, h, w, ns, cs, hs, ws;
  CR_CUDNN(cudnnGetTensor4dDescriptor(d.get(), &type, &n, &c, &h, &w, &ns, &cs, &hs, &ws));
  return ShapeString({n, c, h, w}) + " strides " + ShapeString({ns, cs, hs, ws}) + " " + CudnnTypeName(type);
}

// The element type of argument i, float32 when absent.
DType OptionalDType(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() && !info[i].IsUndefined() ? DTypeArg(info, i) : DType::kFloat32;
}

// f(T{}) with T the kernels' element type of a floating `type`, on the host.
template <typename F>
auto WithHostType(DType type, F&& f) {
  if (type == DType::kBFloat16) return f(math::BFloat16{});
  if (type == DType::kFloat16) return f(math::Float16{});
  if (type == DType::kFloat32) return f(float{});
  ThrowTypeError(OpScope::CurrentOp() + ": expected a floating dtype");
}

// n values of T in `layout` from plain float32 ones, and back, as kernels::Convert runs them.
template <typename T>
std::vector<T> ToDevice(const float* plain, int64_t n, const math::Layout& layout) {
  std::vector<T> out(static_cast<size_t>(n));
  EmulateMap(n, [&](int64_t j) { math::ConvertAt(plain, math::Layout{false, 0, 0}, out.data(), layout, j); });
  return out;
}

template <typename T>
Napi::Float32Array ToPlain(Napi::Env env, const std::vector<T>& values, const math::Layout& layout) {
  Napi::Float32Array out = Poisoned(env, values.size());
  EmulateMap(int64_t(values.size()),
             [&](int64_t j) { math::ConvertAt(values.data(), layout, Data<float>(out), math::Layout{false, 0, 0}, j); });
  return out;
}

// The values of a buffer in physical order, widened to float32.
template <typename T>
Napi::Float32Array Widened(Napi::Env env, const std::vector<T>& values) {
  Napi::Float32Array out = Napi::Float32Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) Data<float>(out)[i] = math::Load(values[i]);
  return out;
}

cudnnMathType_t MathTypeOf(const std::string& name) {
  for (cudnnMathType_t m : {CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, CUDNN_FMA_MATH}) {
    if (name == ConvMathName(m)) return m;
  }
  ThrowTypeError(OpScope::CurrentOp() + ": unknown math type '" + name + "'");
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsString()) ThrowTypeError(OpScope::CurrentOp() + ": expected " + what + " to be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Array ArrayArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsArray()) ThrowTypeError(OpScope::CurrentOp() + ": expected " + what + " to be an array");
  return info[i].As<Napi::Array>();
}

// hostConvPlan(x, w, stride, padding, dilation, groups, tf32) -> what conv2d.cc's plan holds.
Napi::Value ConvPlanOf(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostConvPlan", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const Dims x = IntsArg(info, 0, "input shape", 4), w = IntsArg(info, 1, "weight shape", 4);
    const ConvPlanKey k{ops::ReadConv2dGeometry(info, 2, x, w), OptionalDType(info, 7), BoolArg(info, 6, "tf32")};
    auto p = BuildConvPlan(k);
    int n, c, h, wo;
    CR_CUDNN(cudnnGetConvolution2dForwardOutputDim(p->conv.get(), p->x.get(), p->w.get(), &n, &c, &h, &wo));
    int pad_h, pad_w, u, v, dil_h, dil_w, groups;
    cudnnConvolutionMode_t mode;
    cudnnDataType_t compute;
    CR_CUDNN(cudnnGetConvolution2dDescriptor(p->conv.get(), &pad_h, &pad_w, &u, &v, &dil_h, &dil_w, &mode, &compute));
    CR_CUDNN(cudnnGetConvolutionGroupCount(p->conv.get(), &groups));
    cudnnMathType_t math;
    CR_CUDNN(cudnnGetConvolutionMathType(p->conv.get(), &math));
    cudnnDataType_t wtype;
    cudnnTensorFormat_t format;
    int k0, k1, k2, k3;
    CR_CUDNN(cudnnGetFilter4dDescriptor(p->w.get(), &wtype, &format, &k0, &k1, &k2, &k3));
    Napi::Object o = Napi::Object::New(env);
    o.Set("y", Ints(env, k.g.y));
    o.Set("cudnnY", Ints(env, {n, c, h, wo}));
    o.Set("x", DescString(p->x));
    o.Set("yDesc", DescString(p->y));
    o.Set("bias", DescString(p->bias));
    o.Set("w", ShapeString({k0, k1, k2, k3}) + (format == CUDNN_TENSOR_NCHW ? " NCHW " : " NHWC ") + CudnnTypeName(wtype));
    o.Set("padding", Ints(env, {pad_h, pad_w}));
    o.Set("stride", Ints(env, {u, v}));
    o.Set("dilation", Ints(env, {dil_h, dil_w}));
    o.Set("crossCorrelation", mode == CUDNN_CROSS_CORRELATION);
    o.Set("computeFloat", compute == CUDNN_DATA_FLOAT);
    o.Set("groups", double(groups));
    o.Set("math", ConvMathName(math));
    return o;
  });
}

// hostPoolPlan(x, kernel, stride, padding, 'max' | 'avg') -> what pool2d.cc's plan holds.
Napi::Value PoolPlanOf(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostPoolPlan", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const std::string mode_name = StringArg(info, 4, "mode");
    if (mode_name != "max" && mode_name != "avg") ThrowTypeError("hostPoolPlan: mode must be 'max' or 'avg'");
    const PoolPlanKey k{mode_name == "max" ? PoolMode::kMax : PoolMode::kAvg,
                        ops::ReadPoolGeometry(info, 1, IntsArg(info, 0, "input shape", 4)), OptionalDType(info, 5)};
    auto p = BuildPoolPlan(k);
    int n, c, h, w;
    CR_CUDNN(cudnnGetPooling2dForwardOutputDim(p->pool.get(), p->x.get(), &n, &c, &h, &w));
    cudnnPoolingMode_t mode;
    cudnnNanPropagation_t nan;
    int wh, ww, ph, pw, sh, sw;
    CR_CUDNN(cudnnGetPooling2dDescriptor(p->pool.get(), &mode, &nan, &wh, &ww, &ph, &pw, &sh, &sw));
    const char* mode_str = mode == CUDNN_POOLING_MAX_DETERMINISTIC                ? "max-deterministic"
                           : mode == CUDNN_POOLING_MAX                            ? "max"
                           : mode == CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING ? "average-count-include-padding"
                                                                                   : "average-count-exclude-padding";
    Napi::Object o = Napi::Object::New(env);
    o.Set("y", Ints(env, k.g.y));
    o.Set("cudnnY", Ints(env, {n, c, h, w}));
    o.Set("xDesc", DescString(p->x));
    o.Set("yDesc", DescString(p->y));
    o.Set("mode", mode_str);
    o.Set("propagateNan", nan == CUDNN_PROPAGATE_NAN);
    o.Set("kernel", Ints(env, {wh, ww}));
    o.Set("padding", Ints(env, {ph, pw}));
    o.Set("stride", Ints(env, {sh, sw}));
    return o;
  });
}

// hostBatchNormPlan(x) -> the statistics descriptor batch_norm.cc derives.
Napi::Value BatchNormPlanOf(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostBatchNormPlan", [&]() -> Napi::Value {
    const Dims x = IntsArg(info, 0, "input shape", 4);
    CheckedNumel(x);
    auto p = BuildBatchNormPlan(x, DType::kFloat32);
    return Napi::String::New(info.Env(), DescString(p->stats));
  });
}

// hostBatchNormTail(x, dtype, relu, residual) -> what batch_norm.cc decides and builds for a
// training forward with this tail: whether it tries cuDNN's fused call, with which ops, the type
// cuDNN's call computes in, and the plan's descriptors.
Napi::Value BatchNormTail(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostBatchNormTail", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const Dims x = IntsArg(info, 0, "input shape", 4);
    CheckedNumel(x);
    const DType dtype = DTypeArg(info, 1);
    const bool relu = BoolArg(info, 2, "relu"), residual = BoolArg(info, 3, "residual");
    auto p = BuildBatchNormPlan(x, dtype);
    cudnnActivationMode_t mode;
    cudnnNanPropagation_t nan;
    double coef;
    CR_CUDNN(cudnnGetActivationDescriptor(p->relu.get(), &mode, &nan, &coef));
    Napi::Object o = Napi::Object::New(env);
    o.Set("x", DescString(p->x));
    o.Set("stats", DescString(p->stats));
    o.Set("fused", TriesFusedTail(x, dtype, relu));
    o.Set("computes", DTypeName(BatchNormComputeType(dtype)));
    o.Set("ops", FusedOps(residual) == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION ? "bn-add-activation" : "bn-activation");
    o.Set("activation", mode == CUDNN_ACTIVATION_RELU && nan == CUDNN_PROPAGATE_NAN ? "relu" : "?");
    return o;
  });
}

// hostConvert(values, shape, dtype, toShape) -> { physical, reshaped, plain }: plain float32
// values uploaded into a buffer of shape and dtype (physical: its values in memory order,
// widened), reshaped to toShape (reshaped: likewise), and read back (plain), each step as
// kernels::Convert runs it.
Napi::Value Convert(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostConvert", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const Dims shape = ShapeArg(info, 1), to = ShapeArg(info, 3);
    const int64_t n = CheckedNumel(shape);
    if (CheckedNumel(to) != n) ThrowRangeError("hostConvert: the shapes hold different numbers of elements");
    const float* values = Data<float>(Floats(info[0], "values", size_t(n)));
    const DType dtype = DTypeArg(info, 2);
    return WithHostType(dtype, [&](auto t) -> Napi::Value {
      using T = decltype(t);
      const math::Layout from = LayoutOf(shape, dtype), layout = LayoutOf(to, dtype);
      const std::vector<T> stored = ToDevice<T>(values, n, from);
      std::vector<T> reshaped(static_cast<size_t>(n));
      EmulateMap(n, [&](int64_t j) { math::ConvertAt(stored.data(), from, reshaped.data(), layout, j); });
      Napi::Object o = Napi::Object::New(env);
      o.Set("physical", Widened(env, stored));
      o.Set("reshaped", Widened(env, reshaped));
      o.Set("plain", ToPlain(env, reshaped, layout));
      return o;
    });
  });
}

// hostConvCandidates([[algo, ok, memory, math], ...], tf32, fallback) -> [[algo, math], ...]
Napi::Value ConvCandidatesOf(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostConvCandidates", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Array in = ArrayArg(info, 0, "ranking");
    std::vector<ConvRanked> ranked;
    for (uint32_t i = 0; i < in.Length(); ++i) {
      Napi::Value e = in.Get(i);
      if (!e.IsArray() || e.As<Napi::Array>().Length() != 4) {
        ThrowTypeError("hostConvCandidates: expected [algo, ok, memory, math] entries");
      }
      Napi::Array a = e.As<Napi::Array>();
      ranked.push_back({a.Get(0u).ToNumber().Int32Value(),
                        a.Get(1u).ToBoolean().Value() ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED,
                        size_t(a.Get(2u).ToNumber().DoubleValue()), MathTypeOf(a.Get(3u).ToString().Utf8Value())});
    }
    const std::vector<ConvCandidate> out = ConvCandidates(ranked, BoolArg(info, 1, "tf32"), int(IntArg(info, 2, "fallback")));
    Napi::Array result = Napi::Array::New(env, out.size());
    for (uint32_t i = 0; i < out.size(); ++i) {
      result.Set(i, Tuple(env, {Napi::Number::New(env, out[i].algo), Napi::String::New(env, ConvMathName(out[i].math))}));
    }
    return result;
  });
}

// hostConvWalk(candidates, calls): `calls` lists, per call of one plan direction, the candidate
// indices whose attempt fails (CUDNN_STATUS_NOT_SUPPORTED). Returns per call { tried, chosen,
// logged } or { code, message } when none ran.
Napi::Value ConvWalk(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostConvWalk", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const int64_t count = IntArg(info, 0, "candidates");
    if (count < 1 || count > 16) ThrowRangeError("hostConvWalk: 1 to 16 candidates");
    Napi::Array calls = ArrayArg(info, 1, "calls");
    ConvChoice c;
    for (int64_t i = 0; i < count; ++i) {
      c.candidates.push_back(ConvCandidate{int(i % CUDNN_CONVOLUTION_FWD_ALGO_COUNT), CUDNN_FMA_MATH, 0});
    }
    Napi::Array results = Napi::Array::New(env, calls.Length());
    for (uint32_t call = 0; call < calls.Length(); ++call) {
      std::vector<bool> fails(size_t(count), false);
      Napi::Value f = calls.Get(call);
      if (!f.IsArray()) ThrowTypeError("hostConvWalk: each call is an array of failing indices");
      for (uint32_t j = 0; j < f.As<Napi::Array>().Length(); ++j) {
        const int64_t idx = f.As<Napi::Array>().Get(j).ToNumber().Int64Value();
        if (idx < 0 || idx >= count) ThrowRangeError("hostConvWalk: failing index out of range");
        fails[size_t(idx)] = true;
      }
      std::vector<int64_t> tried;
      int64_t logged = -1;
      Napi::Object r = Napi::Object::New(env);
      try {
        RunFirstWorking(
            c,
            [&](ConvCandidate& cand) -> ConvAttempt {
              const int64_t idx = &cand - c.candidates.data();
              tried.push_back(idx);
              if (!fails[size_t(idx)]) return {true, "", ""};
              return {false, "CUDNN_STATUS_NOT_SUPPORTED", "candidate " + std::to_string(idx) + ": not supported"};
            },
            [&](const ConvCandidate&, size_t index) { logged = int64_t(index); });
        r.Set("chosen", double(c.chosen));
        r.Set("logged", logged < 0 ? env.Null() : Napi::Number::New(env, double(logged)));
      } catch (const NativeError& e) {
        r.Set("code", e.code);
        r.Set("message", e.what());
      }
      r.Set("tried", Ints(env, tried));
      results.Set(call, r);
    }
    return results;
  });
}

// hostElementwise('relu' | 'reluBackward' | 'add' | 'addRelu', a, b | null, dtype?) -> result: a
// and b stored in dtype (plain, as the kernels index every layout), the kernel's per-element code,
// the result read back to float32.
Napi::Value Elementwise(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostElementwise", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const std::string op = StringArg(info, 0, "op");
    if (op != "relu" && op != "reluBackward" && op != "add" && op != "addRelu") {
      ThrowTypeError("hostElementwise: unknown op '" + op + "'");
    }
    if (info.Length() < 2 || !info[1].IsTypedArray()) ThrowTypeError("hostElementwise: expected a Float32Array");
    const size_t n = info[1].As<Napi::TypedArray>().ElementLength();
    const float* a = Data<float>(Floats(info[1], "a", n));
    const float* b = op == "relu" ? nullptr : Data<float>(Floats(info.Length() > 2 ? info[2] : env.Undefined(), "b", n));
    const math::Layout plain{false, 0, 0};
    return WithHostType(OptionalDType(info, 3), [&](auto t) -> Napi::Value {
      using T = decltype(t);
      const std::vector<T> at = ToDevice<T>(a, int64_t(n), plain);
      const std::vector<T> bt = b ? ToDevice<T>(b, int64_t(n), plain) : std::vector<T>();
      std::vector<T> y(n);
      for (T& v : y) math::Store(&v, NAN);
      if (op == "relu") {
        EmulateMap(int64_t(n), [&](int64_t i) { math::ReluAt(at.data(), y.data(), i); });
      } else if (op == "reluBackward") {
        EmulateMap(int64_t(n), [&](int64_t i) { math::ReluBackwardAt(at.data(), bt.data(), y.data(), i); });
      } else {
        EmulateMap(int64_t(n), [&](int64_t i) { math::AddAt(at.data(), bt.data(), op == "addRelu", y.data(), i); });
      }
      return ToPlain(env, y, plain);
    });
  });
}

void CheckRowsAndClasses(int64_t n, int64_t k) {
  if (n < 1 || k < 1 || n * k > (int64_t(1) << 28)) ThrowRangeError(OpScope::CurrentOp() + ": bad n or k");
}

[[noreturn]] void BadLabel(int64_t row, int32_t label) {
  ThrowRangeError(OpScope::CurrentOp() + ": label " + std::to_string(label) + " at row " + std::to_string(row) + " out of range");
}

// hostSoftmaxCrossEntropy(logits, labels, n, k, smoothing) -> [loss, probs]: the forward's one
// block, each thread's rows, then the tree sum, as the kernel runs them.
Napi::Value SoftmaxXent(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostSoftmaxCrossEntropy", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const int64_t n = IntArg(info, 2, "n"), k = IntArg(info, 3, "k");
    CheckRowsAndClasses(n, k);
    const double smoothing = NumberArg(info, 4, "smoothing");
    const float* logits = Data<float>(Floats(info[0], "logits", size_t(n * k)));
    const int32_t* labels = Labels(info[1], size_t(n));
    Napi::Float32Array probs = Poisoned(env, size_t(n * k));
    double partial[kernels::kThreads];
    for (int64_t t = 0; t < kernels::kThreads; ++t) {
      partial[t] = math::SoftmaxXentRows(logits, labels, n, k, smoothing, Data<float>(probs), t, kernels::kThreads, BadLabel);
    }
    for (int s = kernels::kThreads / 2; s > 0; s /= 2) {
      for (int t = 0; t < s; ++t) partial[t] += partial[t + s];
    }
    return Tuple(env, {Napi::Number::New(env, double(float(partial[0] / double(n)))), probs});
  });
}

// hostSoftmaxCrossEntropyBackward(probs, labels, n, k, smoothing, dloss) -> dlogits
Napi::Value SoftmaxXentBackward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostSoftmaxCrossEntropyBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const int64_t n = IntArg(info, 2, "n"), k = IntArg(info, 3, "k");
    CheckRowsAndClasses(n, k);
    const double smoothing = NumberArg(info, 4, "smoothing");
    const float* probs = Data<float>(Floats(info[0], "probs", size_t(n * k)));
    const int32_t* labels = Labels(info[1], size_t(n));
    // As the kernel reads it: dloss is a float32 on the device.
    const double scale = double(float(NumberArg(info, 5, "dloss"))) / double(n);
    Napi::Float32Array dx = Poisoned(env, size_t(n * k));
    EmulateMap(n * k, [&](int64_t i) { math::SoftmaxXentGradAt(probs, labels, k, smoothing, scale, Data<float>(dx), i, BadLabel); });
    return dx;
  });
}

// hostSgdStep(params[], grads[], bufs[] | null, lr, momentum, weightDecay, nesterov, first)
//   -> { params, bufs, launches: [[tensors, blocks], ...] }, the tensors updated in place of
//   copies by every launch of PlanSgd, every block and thread.
Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostSgdStep", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Array ps = ArrayArg(info, 0, "params"), gs = ArrayArg(info, 1, "grads");
    const bool momentum_buffers = info.Length() > 2 && !info[2].IsNull();
    Napi::Array bs = momentum_buffers ? ArrayArg(info, 2, "bufs") : Napi::Array::New(env, 0);
    if (gs.Length() != ps.Length() || (momentum_buffers && bs.Length() != ps.Length())) {
      ThrowRangeError("hostSgdStep: params, grads and bufs differ in length");
    }
    const math::SgdHyper h{float(NumberArg(info, 3, "lr")), float(NumberArg(info, 4, "momentum")),
                           float(NumberArg(info, 5, "weightDecay")), BoolArg(info, 6, "nesterov"), BoolArg(info, 7, "first")};
    Napi::Array out_p = Napi::Array::New(env, ps.Length()), out_b = Napi::Array::New(env, bs.Length());
    std::vector<math::SgdTensor> tensors;
    for (uint32_t i = 0; i < ps.Length(); ++i) {
      if (!ps.Get(i).IsTypedArray()) ThrowTypeError("hostSgdStep: expected Float32Array params");
      const size_t n = ps.Get(i).As<Napi::TypedArray>().ElementLength();
      Napi::Float32Array p = CopyOf(env, Floats(ps.Get(i), "param", n));
      Napi::Float32Array b = momentum_buffers ? CopyOf(env, Floats(bs.Get(i), "buf", n)) : Napi::Float32Array();
      out_p.Set(i, p);
      if (momentum_buffers) out_b.Set(i, b);
      tensors.push_back({Data<float>(p), Data<float>(Floats(gs.Get(i), "grad", n)), momentum_buffers ? Data<float>(b) : nullptr,
                         int64_t(n)});
    }
    const std::vector<kernels::SgdLaunch> launches = kernels::PlanSgd(tensors.data(), tensors.size());
    Napi::Array plan = Napi::Array::New(env, launches.size());
    for (uint32_t l = 0; l < launches.size(); ++l) {
      const kernels::SgdLaunch& launch = launches[l];
      for (unsigned y = 0; y < launch.tensors; ++y) {
        for (int64_t b = 0; b < launch.blocks; ++b) {
          for (int64_t t = 0; t < kernels::kThreads; ++t) kernels::SgdThread(launch.chunk, y, b, launch.blocks, t, h);
        }
      }
      plan.Set(l, Ints(env, {int64_t(launch.tensors), int64_t(launch.blocks)}));
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("params", out_p);
    o.Set("bufs", momentum_buffers ? Napi::Value(out_b) : env.Null());
    o.Set("launches", plan);
    return o;
  });
}

// hostPoolBackward('max' | 'avg', x | null, dy, xShape, kernel, stride, padding, dtype?) -> dx:
// with a half-precision dtype, x and dy are stored as the backend stores them (channels-last, in
// that type) and dx is read back to plain float32, each step as the kernels run it.
Napi::Value PoolBackward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostPoolBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const std::string mode = StringArg(info, 0, "mode");
    if (mode != "max" && mode != "avg") ThrowTypeError("hostPoolBackward: mode must be 'max' or 'avg'");
    const PoolGeometry g = ops::ReadPoolGeometry(info, 4, IntsArg(info, 3, "input shape", 4));
    const DType dtype = OptionalDType(info, 7);
    const int64_t n = g.x[0] * g.x[1] * g.x[2] * g.x[3], dy_n = g.y[0] * g.y[1] * g.y[2] * g.y[3];
    const float* dy = Data<float>(Floats(info[2], "dy", size_t(dy_n)));
    const float* x = mode == "max" ? Data<float>(Floats(info[1], "x", size_t(n))) : nullptr;
    const math::PoolPlane plane = PoolPlaneOf(g, dtype);
    return WithHostType(dtype, [&](auto t) -> Napi::Value {
      using T = decltype(t);
      const std::vector<T> dy_d = ToDevice<T>(dy, dy_n, LayoutOf(g.y, dtype));
      const std::vector<T> x_d = x ? ToDevice<T>(x, n, LayoutOf(g.x, dtype)) : std::vector<T>();
      std::vector<T> dx(static_cast<size_t>(n));
      for (T& v : dx) math::Store(&v, NAN);
      if (x) {
        EmulateMap(n, [&](int64_t i) { math::MaxPoolBackwardAt(x_d.data(), dy_d.data(), dx.data(), plane, i); });
      } else {
        EmulateMap(n, [&](int64_t i) { math::AvgPoolBackwardAt(dy_d.data(), dx.data(), plane, i); });
      }
      return ToPlain(env, dx, LayoutOf(g.x, dtype));
    });
  });
}

// hostCaptureLedger(events) -> log: runs the captured step's memory bookkeeping
// (capture_ledger.h) through `events`, each "begin", "end", "free <name>", "keep <name>" or
// "fail <why>", with names standing for buffers, and logs what it did: "freed <name>" when a free
// ran at once, and at each end "end deferred=<names> kept=<names> failure=<why>".
Napi::Value CaptureLedgerOf(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "hostCaptureLedger", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) ThrowTypeError("hostCaptureLedger: expected an array of events");
    Napi::Array events = info[0].As<Napi::Array>();
    CaptureLedger ledger;
    std::map<std::string, std::shared_ptr<std::string>> buffers;
    const auto buffer = [&](const std::string& name) {
      auto& b = buffers[name];
      if (!b) b = std::make_shared<std::string>(name);
      return b;
    };
    std::vector<std::string> log;
    const auto names = [](auto&& items, auto&& name_of) {
      std::string out;
      for (const auto& item : items) out += (out.empty() ? "" : ",") + name_of(item);
      return out;
    };
    for (uint32_t i = 0; i < events.Length(); ++i) {
      const std::string e = events.Get(i).ToString();
      const size_t space = e.find(' ');
      const std::string verb = e.substr(0, space), arg = space == std::string::npos ? "" : e.substr(space + 1);
      if (verb == "begin") {
        ledger.Begin([] {});
      } else if (verb == "free") {
        ledger.FreeOrDefer(buffer(arg).get(), [&](void* p) { log.push_back("freed " + *static_cast<std::string*>(p)); });
      } else if (verb == "keep") {
        auto b = buffer(arg);
        ledger.Keep(b.get(), b);
      } else if (verb == "fail") {
        ledger.Fail(arg);
      } else if (verb == "end") {
        CaptureLedger::Ended ended = ledger.End([] {});
        log.push_back("end deferred=" + names(ended.deferred, [](void* p) { return *static_cast<std::string*>(p); }) +
                      " kept=" + names(ended.kept, [](const std::shared_ptr<void>& p) { return *static_cast<std::string*>(p.get()); }) +
                      " failure=" + ended.failure);
      } else {
        ThrowRangeError("hostCaptureLedger: unknown event '" + e + "'");
      }
    }
    Napi::Array out = Napi::Array::New(env, log.size());
    for (uint32_t i = 0; i < log.size(); ++i) out.Set(i, log[i]);
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
  static const struct {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  } kChecks[] = {
      {"hostConvPlan", ConvPlanOf},
      {"hostPoolPlan", PoolPlanOf},
      {"hostBatchNormPlan", BatchNormPlanOf},
      {"hostBatchNormTail", BatchNormTail},
      {"hostConvert", Convert},
      {"hostConvCandidates", ConvCandidatesOf},
      {"hostConvWalk", ConvWalk},
      {"hostElementwise", Elementwise},
      {"hostSoftmaxCrossEntropy", SoftmaxXent},
      {"hostSoftmaxCrossEntropyBackward", SoftmaxXentBackward},
      {"hostSgdStep", SgdStep},
      {"hostPoolBackward", PoolBackward},
      {"hostNccl", NcclStatus},
      {"hostCaptureLedger", CaptureLedgerOf},
  };
  for (const auto& c : kChecks) exports.Set(c.name, Napi::Function::New(env, c.fn, c.name));
}

}  // namespace cr::cuda
