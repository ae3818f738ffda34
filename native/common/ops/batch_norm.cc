// Batch normalization's entry points over [N, C, H, W]: training forward (with the running
// statistics' update), inference forward, backward.
#include <cmath>

#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "registry.h"

namespace cr::ops {

namespace {

// The checks of one call: every failure is a RangeError "<op>: <why> (input <x's shape>)".
class Checker {
 public:
  Checker(const char* op, const Storage& x) : op_(op), x_(x) {
    if (x.dims.size() != 4) Bad("expected a 4-D input");
    if (x.dtype != DType::kFloat32) Bad("expected a float32 input, got " + std::string(DTypeName(x.dtype)));
  }

  // A float32 [C] vector (weight, bias, statistics).
  void Vector(const Storage& s, const char* what) const {
    if (s.dims != Dims{x_.dims[1]} || s.dtype != DType::kFloat32) {
      Bad(std::string(what) + " must be float32 [" + std::to_string(x_.dims[1]) + "], got " + DTypeName(s.dtype) + " " +
          s.ShapeString());
    }
  }

  void Gradient(const Storage& dy) const {
    if (dy.dims != x_.dims) Bad("gradient of shape " + dy.ShapeString() + " does not match the input");
    if (dy.dtype != x_.dtype) Bad("expected a " + std::string(DTypeName(x_.dtype)) + " gradient, got " + DTypeName(dy.dtype));
  }

  // Training normalizes with the batch variance and updates the running one with the unbiased
  // variance, which divides by N·H·W - 1: one value per channel has neither (PyTorch refuses too).
  void ManyValues() const {
    if (x_.dims[0] * x_.dims[2] * x_.dims[3] < 2) Bad("training needs more than one value per channel");
  }

  void Momentum(double momentum) const {
    if (!(momentum >= 0 && momentum <= 1)) Bad("momentum must be in [0, 1], got " + FormatNumber(momentum));
  }

  // Epsilon as the float32 the backends normalize with; positive and finite.
  float Eps(double eps) const {
    const float f = static_cast<float>(eps);
    if (!(f > 0) || !std::isfinite(f)) Bad("eps must be positive and representable as float32, got " + FormatNumber(eps));
    return f;
  }

  [[noreturn]] void Bad(const std::string& why) const {
    ThrowRangeError(std::string(op_) + ": " + why + " (input " + x_.ShapeString() + ")");
  }

 private:
  const char* op_;
  const Storage& x_;
};

}  // namespace

// batchNormForwardTraining(x, weight, bias, runningMean | null, runningVar | null, momentum, eps)
//   -> [y, saved1, saved2]
Napi::Value BatchNormForwardTraining(const Napi::CallbackInfo& info) {
  return Entry(info, "batchNormForwardTraining", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    BatchNormForwardTrainingArgs a;
    a.x = TensorArg(info, 0, "input");
    a.weight = TensorArg(info, 1, "weight");
    a.bias = TensorArg(info, 2, "bias");
    a.running_mean = OptionalTensorArg(info, 3, "running mean");
    a.running_var = OptionalTensorArg(info, 4, "running variance");
    a.momentum = NumberArg(info, 5, "momentum");
    Checker check("batchNormForwardTraining", *a.x);
    check.Vector(*a.weight, "weight");
    check.Vector(*a.bias, "bias");
    if (a.running_mean) check.Vector(*a.running_mean, "running mean");
    if (a.running_var) check.Vector(*a.running_var, "running variance");
    check.Momentum(a.momentum);
    check.ManyValues();
    a.eps = check.Eps(NumberArg(info, 6, "eps"));
    a.dtype = a.x->dtype;
    a.task = Describe("batchNormForwardTraining", {a.x.get(), a.weight.get()});
    BatchNormTrainingOutputs out = backend.BatchNormForwardTraining(a);
    return Tuple(env, {WrapStorage(env, out.y), WrapStorage(env, out.saved1), WrapStorage(env, out.saved2)});
  });
}

// batchNormForwardInference(x, weight, bias, mean, variance, eps) -> y
Napi::Value BatchNormForwardInference(const Napi::CallbackInfo& info) {
  return Entry(info, "batchNormForwardInference", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    BatchNormForwardInferenceArgs a;
    a.x = TensorArg(info, 0, "input");
    a.weight = TensorArg(info, 1, "weight");
    a.bias = TensorArg(info, 2, "bias");
    a.mean = TensorArg(info, 3, "mean");
    a.var = TensorArg(info, 4, "variance");
    Checker check("batchNormForwardInference", *a.x);
    check.Vector(*a.weight, "weight");
    check.Vector(*a.bias, "bias");
    check.Vector(*a.mean, "mean");
    check.Vector(*a.var, "variance");
    a.eps = check.Eps(NumberArg(info, 5, "eps"));
    a.dtype = a.x->dtype;
    a.task = Describe("batchNormForwardInference", {a.x.get(), a.weight.get()});
    return WrapStorage(info.Env(), backend.BatchNormForwardInference(a));
  });
}

// batchNormBackward(x, dy, weight, saved1, saved2, eps) -> [dx, dweight, dbias]
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  return Entry(info, "batchNormBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    BatchNormBackwardArgs a;
    a.x = TensorArg(info, 0, "input");
    a.dy = TensorArg(info, 1, "gradient");
    a.weight = TensorArg(info, 2, "weight");
    a.saved1 = TensorArg(info, 3, "saved mean");
    a.saved2 = TensorArg(info, 4, "saved statistic");
    Checker check("batchNormBackward", *a.x);
    check.Gradient(*a.dy);
    check.Vector(*a.weight, "weight");
    check.Vector(*a.saved1, "saved mean");
    check.Vector(*a.saved2, "saved statistic");
    a.eps = check.Eps(NumberArg(info, 5, "eps"));
    a.dtype = a.x->dtype;
    a.task = Describe("batchNormBackward", {a.x.get(), a.dy.get()});
    BatchNormGrads g = backend.BatchNormBackward(a);
    return Tuple(env, {WrapStorage(env, g.dx), WrapStorage(env, g.dweight), WrapStorage(env, g.dbias)});
  });
}

}  // namespace cr::ops
