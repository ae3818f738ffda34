#include "checks.h"

#include <cmath>
#include <cstdio>
#include <unordered_set>

#include "args.h"
#include "errors.h"

namespace cr {

std::string FormatNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void RequireDType(Napi::Env env, const Storage& s, DType dtype, const char* what) {
  if (s.dtype != dtype) {
    throw Napi::TypeError::New(env, OpScope::CurrentOp() + ": expected " + what + " to be " + DTypeName(dtype) + ", got " +
                                        DTypeName(s.dtype));
  }
}

void RequireFloat(Napi::Env env, const Storage& s, const char* what) { RequireDType(env, s, DType::kFloat32, what); }

void RequireSameShape(Napi::Env env, const Storage& a, const Storage& b) {
  if (a.dims != b.dims) {
    throw Napi::RangeError::New(env, OpScope::CurrentOp() + ": shapes " + a.ShapeString() + " and " + b.ShapeString() + " differ");
  }
}

std::pair<int64_t, int64_t> ReadScoresAndLabels(Napi::Env env, const Storage& scores, const char* what,
                                                const Storage& labels) {
  RequireDType(env, scores, DType::kFloat32, what);
  RequireDType(env, labels, DType::kInt32, "labels");
  if (scores.dims.size() != 2 || labels.dims.size() != 1 || labels.dims[0] != scores.dims[0]) {
    throw Napi::RangeError::New(env, OpScope::CurrentOp() + ": expected " + what + " [N, K] and labels [N], got " +
                                         scores.ShapeString() + " and " + labels.ShapeString());
  }
  return {scores.dims[0], scores.dims[1]};
}

double LabelSmoothingArg(const Napi::CallbackInfo& info, size_t i) {
  double eps = NumberArg(info, i, "labelSmoothing");
  if (eps < 0 || eps >= 1) {
    throw Napi::RangeError::New(info.Env(), OpScope::CurrentOp() + ": labelSmoothing must be in [0, 1), got " + std::to_string(eps));
  }
  return eps;
}

void CheckLossGradient(Napi::Env env, const Storage& dloss) {
  RequireDType(env, dloss, DType::kFloat32, "loss gradient");
  if (!dloss.dims.empty()) {
    throw Napi::RangeError::New(env, "softmaxCrossEntropyBackward: loss gradient must have shape [], got " + dloss.ShapeString());
  }
}

PoolGeometry ReadPoolGeometry(const Napi::CallbackInfo& info, const char* op, size_t i, const std::vector<int64_t>& x,
                              PoolDimsCheck check_dims) {
  PoolGeometry p;
  p.x = x;
  p.kernel = IntsArg(info, i, "kernel", 2);
  p.stride = IntsArg(info, i + 1, "stride", 2);
  p.padding = IntsArg(info, i + 2, "padding", 2);
  const PoolFailure bad = [&](const std::string& why) {
    throw Napi::RangeError::New(info.Env(), std::string(op) + ": " + why + " (input " + ShapeString(x) + ", kernel " +
                                                ShapeString(p.kernel) + ", stride " + ShapeString(p.stride) +
                                                ", padding " + ShapeString(p.padding) + ")");
  };
  if (x.size() != 4) bad("expected a 4-D input");
  check_dims(info.Env(), x, bad);
  for (int k = 0; k < 2; ++k) {
    if (p.kernel[k] < 1 || p.stride[k] < 1) bad("kernel and stride must be >= 1");
    if (p.padding[k] < 0 || p.padding[k] > p.kernel[k] / 2) bad("padding must be between 0 and half the kernel");
  }
  p.y = {x[0], x[1], 0, 0};
  // Floor division as in PyTorch: a negative span (kernel larger than the padded input) is no
  // output, where C++'s truncation toward zero would give 1.
  for (int k = 0; k < 2; ++k) {
    const int64_t span = x[2 + k] + 2 * p.padding[k] - p.kernel[k];
    p.y[2 + k] = span < 0 ? 0 : span / p.stride[k] + 1;
  }
  if (p.y[2] < 1 || p.y[3] < 1) bad("the kernel does not fit the padded input");
  return p;
}

void CheckPoolInput(Napi::Env env, const char* op, const Storage& x) {
  if (x.dtype != DType::kFloat32) {
    throw Napi::RangeError::New(env, std::string(op) + ": expected a float32 input, got int32");
  }
}

void CheckPoolGradient(Napi::Env env, const char* op, const Storage& dy, const std::vector<int64_t>& y) {
  if (dy.dims != y) {
    throw Napi::RangeError::New(env, std::string(op) + ": gradient of shape " + dy.ShapeString() +
                                         " does not match the output " + ShapeString(y));
  }
  if (dy.dtype != DType::kFloat32) {
    throw Napi::RangeError::New(env, std::string(op) + ": expected a float32 gradient, got int32");
  }
}

std::vector<int64_t> ConvOutputDims(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                    const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                                    const std::vector<int64_t>& dilation) {
  std::vector<int64_t> y = {x[0], w[0], 0, 0};
  for (int i = 0; i < 2; ++i) {
    int64_t k_eff = (w[2 + i] - 1) * dilation[i] + 1;
    // C++ division truncates toward zero: a kernel up to `stride` larger than the padded input
    // would give 1 instead of PyTorch's floor, which is <= 0 (no output).
    const int64_t span = x[2 + i] + 2 * padding[i] - k_eff;
    y[2 + i] = span < 0 ? 0 : span / stride[i] + 1;
  }
  return y;
}

void CheckSgdBuffers(Napi::Env env, const std::vector<const Storage*>& params, const std::vector<const Storage*>& grads,
                     const std::vector<const Storage*>& bufs, float momentum) {
  const bool use_bufs = momentum != 0;
  auto bad = [&](const std::string& why) { throw Napi::RangeError::New(env, "sgdStep: " + why); };
  if (grads.size() != params.size()) {
    bad(std::to_string(params.size()) + " params but " + std::to_string(grads.size()) + " grads");
  }
  if (bufs.size() != (use_bufs ? params.size() : 0)) {
    bad(std::to_string(bufs.size()) + " momentum buffers for " + std::to_string(params.size()) + " params and momentum " +
        std::to_string(momentum));
  }
  std::unordered_set<const Storage*> seen;
  for (size_t i = 0; i < params.size(); ++i) {
    const Storage* triple[] = {params[i], grads[i], use_bufs ? bufs[i] : nullptr};
    for (const Storage* s : triple) {
      if (s && s->dtype != DType::kFloat32) {
        throw Napi::TypeError::New(env, "sgdStep: parameter " + std::to_string(i) + " has an " + DTypeName(s->dtype) +
                                            " parameter, gradient or buffer; all must be float32");
      }
      if (s && s->dims != params[i]->dims) {
        bad("parameter " + std::to_string(i) + " has shape " + params[i]->ShapeString() + " but a gradient or buffer of shape " +
            s->ShapeString());
      }
    }
    if (!seen.insert(params[i]).second) bad("parameter " + std::to_string(i) + " appears twice");
  }
}

BatchNormChecker::BatchNormChecker(Napi::Env env, const char* op, const Storage& x) : env_(env), op_(op), x_(x) {
  if (x.dims.size() != 4) Bad("expected a 4-D input");
  if (x.dtype != DType::kFloat32) Bad("expected a float32 input, got int32");
  c_ = x.dims[1];
}

void BatchNormChecker::Vector(const Storage& s, const char* what) const {
  if (s.dims != std::vector<int64_t>{c_} || s.dtype != DType::kFloat32) {
    Bad(std::string(what) + " must be float32 [" + std::to_string(c_) + "], got " + DTypeName(s.dtype) + " " +
        s.ShapeString());
  }
}

void BatchNormChecker::Gradient(const Storage& dy) const {
  if (dy.dims != x_.dims) Bad("gradient of shape " + dy.ShapeString() + " does not match the input");
  if (dy.dtype != DType::kFloat32) Bad("expected a float32 gradient, got int32");
}

void BatchNormChecker::Momentum(double momentum) const {
  if (!(momentum >= 0 && momentum <= 1)) Bad("momentum must be in [0, 1], got " + FormatNumber(momentum));
}

float BatchNormChecker::Eps(double eps) const {
  float f = static_cast<float>(eps);
  if (!(f > 0) || !std::isfinite(f)) Bad("eps must be positive and representable as float32, got " + FormatNumber(eps));
  return f;
}

void BatchNormChecker::Bad(const std::string& why) const {
  throw Napi::RangeError::New(env_, std::string(op_) + ": " + why + " (input " + x_.ShapeString() + ")");
}

}  // namespace cr
