// Batch normalization's entry points over [N, C, H, W]: training forward (with the running
// statistics' update), inference forward, backward; each with the fused tail of op_args.h
// (relu(bn(x)), relu(bn(x) + residual)).
#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "batch_norm_checker.h"
#include "registry.h"

namespace cr::ops {

// batchNormForwardTraining(x, weight, bias, runningMean | null, runningVar | null, momentum, eps,
//                          residual | null, relu) -> [y, saved1, saved2, saved3 | null]
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
    BatchNormChecker check("batchNormForwardTraining", *a.x);
    check.Vector(*a.weight, "weight");
    check.Vector(*a.bias, "bias");
    if (a.running_mean) check.Vector(*a.running_mean, "running mean");
    if (a.running_var) check.Vector(*a.running_var, "running variance");
    check.Momentum(a.momentum);
    check.ManyValues();
    a.eps = check.Eps(NumberArg(info, 6, "eps"));
    a.tail = check.Tail(info, 7);
    a.dtype = a.x->dtype;
    a.task = Describe("batchNormForwardTraining", {a.x.get(), a.weight.get(), a.tail.residual.get()});
    BatchNormTrainingOutputs out = backend.BatchNormForwardTraining(a);
    return Tuple(env, {WrapStorage(env, out.y), WrapStorage(env, out.saved1), WrapStorage(env, out.saved2),
                       WrapOptional(env, out.saved3)});
  });
}

// batchNormForwardInference(x, weight, bias, mean, variance, eps, residual | null, relu) -> y
Napi::Value BatchNormForwardInference(const Napi::CallbackInfo& info) {
  return Entry(info, "batchNormForwardInference", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    BatchNormForwardInferenceArgs a;
    a.x = TensorArg(info, 0, "input");
    a.weight = TensorArg(info, 1, "weight");
    a.bias = TensorArg(info, 2, "bias");
    a.mean = TensorArg(info, 3, "mean");
    a.var = TensorArg(info, 4, "variance");
    BatchNormChecker check("batchNormForwardInference", *a.x);
    check.Vector(*a.weight, "weight");
    check.Vector(*a.bias, "bias");
    check.Vector(*a.mean, "mean");
    check.Vector(*a.var, "variance");
    a.eps = check.Eps(NumberArg(info, 5, "eps"));
    a.tail = check.Tail(info, 6);
    a.dtype = a.x->dtype;
    a.task = Describe("batchNormForwardInference", {a.x.get(), a.weight.get(), a.tail.residual.get()});
    return WrapStorage(info.Env(), backend.BatchNormForwardInference(a));
  });
}

// batchNormBackward(x, y | null, dy, weight, saved1, saved2, saved3 | null, eps, withResidual, relu)
//   -> [dx, dweight, dbias, dresidual | null]
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  return Entry(info, "batchNormBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    BatchNormBackwardArgs a;
    a.x = TensorArg(info, 0, "input");
    a.y = OptionalTensorArg(info, 1, "output");
    a.dy = TensorArg(info, 2, "gradient");
    a.weight = TensorArg(info, 3, "weight");
    a.saved1 = TensorArg(info, 4, "saved mean");
    a.saved2 = TensorArg(info, 5, "saved statistic");
    a.saved3 = OptionalTensorArg(info, 6, "saved tail state");
    BatchNormChecker check("batchNormBackward", *a.x);
    check.LikeInput(*a.dy, "gradient");
    check.Vector(*a.weight, "weight");
    check.Vector(*a.saved1, "saved mean");
    check.Vector(*a.saved2, "saved statistic");
    a.eps = check.Eps(NumberArg(info, 7, "eps"));
    a.with_residual = BoolArg(info, 8, "withResidual");
    a.relu = BoolArg(info, 9, "relu");
    if (a.relu && !a.y) check.Bad("the forward's output is needed for the ReLU's gradient");
    if (a.y) check.LikeInput(*a.y, "output");
    a.dtype = a.x->dtype;
    a.task = Describe("batchNormBackward", {a.x.get(), a.dy.get()});
    BatchNormGrads g = backend.BatchNormBackward(a);
    return Tuple(env, {WrapStorage(env, g.dx), WrapStorage(env, g.dweight), WrapStorage(env, g.dbias),
                       WrapOptional(env, g.dresidual)});
  });
}

}  // namespace cr::ops
