#include "checks.h"

#include <cmath>
#include <cstdio>

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
