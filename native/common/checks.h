// Argument checks shared by the backends: the rules that do not depend on the library that runs
// the op, with the same messages and error types on every backend. Backend-specific limits
// (cuDNN's, oneDNN's layouts) stay in the backends, next to the library that imposes them.
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "storage.h"

namespace cr {

// "%g" of `v`, for error messages.
std::string FormatNumber(double v);

// Throws a TypeError unless `s` holds `dtype`: "<op>: expected <what> to be <dtype>, got <dtype>".
void RequireDType(Napi::Env env, const Storage& s, DType dtype, const char* what);
// Throws a TypeError unless `s` holds float32 (int32 buffers are labels only).
void RequireFloat(Napi::Env env, const Storage& s, const char* what);
// Throws a RangeError unless `a` and `b` have the same shape.
void RequireSameShape(Napi::Env env, const Storage& a, const Storage& b);

// Softmax cross-entropy: checks the float32 scores [N, K] (logits or probabilities, named
// `what`) and the int32 labels [N], and returns {N, K}.
std::pair<int64_t, int64_t> ReadScoresAndLabels(Napi::Env env, const Storage& scores, const char* what,
                                                const Storage& labels);
// The label smoothing in [0, 1) at argument `i`.
double LabelSmoothingArg(const Napi::CallbackInfo& info, size_t i);
// The float32 scalar gradient of the loss that softmaxCrossEntropyBackward takes.
void CheckLossGradient(Napi::Env env, const Storage& dloss);

// 2-D pooling geometry in PyTorch's floor mode: input x, output y, and the kernel, stride and
// padding read from arguments i, i + 1, i + 2.
struct PoolGeometry {
  std::vector<int64_t> x, y;
  std::vector<int64_t> kernel, stride, padding;
};

// Reports a bad pooling argument: throws a RangeError "<op>: <why> (input ..., kernel ..., ...)".
using PoolFailure = std::function<void(const std::string& why)>;
// The backend's rule on the 4-D input's dimensions, run before the kernel is checked.
using PoolDimsCheck = void (*)(Napi::Env env, const std::vector<int64_t>& x, const PoolFailure& bad);

// Reads and checks the geometry (kernel, stride, padding from argument `i` on) of pooling `x`.
PoolGeometry ReadPoolGeometry(const Napi::CallbackInfo& info, const char* op, size_t i, const std::vector<int64_t>& x,
                              PoolDimsCheck check_dims);
// The pooling input must be float32.
void CheckPoolInput(Napi::Env env, const char* op, const Storage& x);
// The pooling output gradient must be float32 and of the output's shape `y`.
void CheckPoolGradient(Napi::Env env, const char* op, const Storage& dy, const std::vector<int64_t>& y);

// A convolution's output dims [N, O, H, W] for input x and weight w, PyTorch's floor division.
std::vector<int64_t> ConvOutputDims(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                    const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                                    const std::vector<int64_t>& dilation);

// sgdStep's buffer lists: as many grads as params, one momentum buffer per param when momentum
// is not 0 and none otherwise, all float32 and of their param's shape, no param twice.
void CheckSgdBuffers(Napi::Env env, const std::vector<const Storage*>& params, const std::vector<const Storage*>& grads,
                     const std::vector<const Storage*>& bufs, float momentum);

template <typename S>
void CheckSgdBuffers(Napi::Env env, const std::vector<std::shared_ptr<S>>& params,
                     const std::vector<std::shared_ptr<S>>& grads, const std::vector<std::shared_ptr<S>>& bufs,
                     float momentum) {
  auto raw = [](const std::vector<std::shared_ptr<S>>& v) {
    std::vector<const Storage*> out;
    out.reserve(v.size());
    for (const auto& s : v) out.push_back(s.get());
    return out;
  };
  CheckSgdBuffers(env, raw(params), raw(grads), raw(bufs), momentum);
}

// Batch normalization over a 4-D float32 input x with C = x.dims[1] channels: every failure is a
// RangeError "<op>: <why> (input <x's shape>)".
class BatchNormChecker {
 public:
  BatchNormChecker(Napi::Env env, const char* op, const Storage& x);

  // A float32 [C] vector (weight, bias, statistics).
  void Vector(const Storage& s, const char* what) const;
  // The output gradient: float32 and of x's shape.
  void Gradient(const Storage& dy) const;
  void Momentum(double momentum) const;
  // Epsilon as the float32 the backends normalize with; positive and finite.
  float Eps(double eps) const;

  [[noreturn]] void Bad(const std::string& why) const;

  int64_t channels() const { return c_; }

 private:
  Napi::Env env_;
  const char* op_;
  const Storage& x_;
  int64_t c_ = 0;
};

}  // namespace cr
