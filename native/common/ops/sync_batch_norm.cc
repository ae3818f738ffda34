// Synchronized batch normalization's entry points: the local parts of a batch norm whose batch
// statistics span a process group (PyTorch's SyncBatchNorm, with the same split as its
// batch_norm_stats / batch_norm_gather_stats_with_counts / batch_norm_backward_reduce /
// batch_norm_backward_elemt). lib/ops/sync-batch-norm.ts runs the collectives between them and
// normalizes with batchNormForwardInference, given the group's mean and variance.
//
// Kept apart from batch_norm.cc's entry points, which change with the fused and reduced-precision
// forms of batch norm: these take float32 only.
#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "batch_norm_checker.h"
#include "registry.h"

namespace cr::ops {

// syncBatchNormStats(x) -> [3, C]: mean, M2, count
Napi::Value SyncBatchNormStats(const Napi::CallbackInfo& info) {
  return Entry(info, "syncBatchNormStats", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    SyncBatchNormStatsArgs a;
    a.x = TensorArg(info, 0, "input");
    BatchNormChecker("syncBatchNormStats", *a.x).Float32Input();
    a.dtype = a.x->dtype;
    a.task = Describe("syncBatchNormStats", {a.x.get()});
    return WrapStorage(info.Env(), backend.SyncBatchNormStats(a));
  });
}

// syncBatchNormGather(gathered [W, 3, C], runningMean | null, runningVar | null, momentum) -> [mean, var, count]
Napi::Value SyncBatchNormGather(const Napi::CallbackInfo& info) {
  return Entry(info, "syncBatchNormGather", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    SyncBatchNormGatherArgs a;
    a.gathered = TensorArg(info, 0, "gathered statistics");
    a.running_mean = OptionalTensorArg(info, 1, "running mean");
    a.running_var = OptionalTensorArg(info, 2, "running variance");
    a.momentum = NumberArg(info, 3, "momentum");
    const Storage& g = *a.gathered;
    if (g.dims.size() != 3 || g.dims[1] != 3 || g.dtype != DType::kFloat32) {
      ThrowRangeError("syncBatchNormGather: expected float32 gathered statistics [W, 3, C], got " + std::string(DTypeName(g.dtype)) + " " + g.ShapeString());
    }
    BatchNormChecker check("syncBatchNormGather", g.dims[2], "gathered statistics " + g.ShapeString());
    if (a.running_mean) check.Vector(*a.running_mean, "running mean");
    if (a.running_var) check.Vector(*a.running_var, "running variance");
    check.Momentum(a.momentum);
    a.dtype = g.dtype;
    a.task = Describe("syncBatchNormGather", {a.gathered.get()});
    SyncBatchNormGathered out = backend.SyncBatchNormGather(a);
    return Tuple(env, {WrapStorage(env, out.mean), WrapStorage(env, out.var), WrapStorage(env, out.count)});
  });
}

// syncBatchNormBackwardReduce(x, dy, mean, var, eps) -> [sumDy, sumDyXhat]
Napi::Value SyncBatchNormBackwardReduce(const Napi::CallbackInfo& info) {
  return Entry(info, "syncBatchNormBackwardReduce", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    SyncBatchNormBackwardReduceArgs a;
    a.x = TensorArg(info, 0, "input");
    a.dy = TensorArg(info, 1, "gradient");
    a.mean = TensorArg(info, 2, "mean");
    a.var = TensorArg(info, 3, "variance");
    BatchNormChecker check("syncBatchNormBackwardReduce", *a.x);
    check.Float32Input();
    check.LikeInput(*a.dy, "gradient");
    check.Vector(*a.mean, "mean");
    check.Vector(*a.var, "variance");
    a.eps = check.Eps(NumberArg(info, 4, "eps"));
    a.dtype = a.x->dtype;
    a.task = Describe("syncBatchNormBackwardReduce", {a.x.get(), a.dy.get()});
    SyncBatchNormSums out = backend.SyncBatchNormBackwardReduce(a);
    return Tuple(env, {WrapStorage(env, out.sum_dy), WrapStorage(env, out.sum_dy_xhat)});
  });
}

// syncBatchNormBackwardElemt(x, dy, mean, var, weight, sumDy, sumDyXhat, count, eps) -> dx
Napi::Value SyncBatchNormBackwardElemt(const Napi::CallbackInfo& info) {
  return Entry(info, "syncBatchNormBackwardElemt", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    SyncBatchNormBackwardElemtArgs a;
    a.x = TensorArg(info, 0, "input");
    a.dy = TensorArg(info, 1, "gradient");
    a.mean = TensorArg(info, 2, "mean");
    a.var = TensorArg(info, 3, "variance");
    a.weight = TensorArg(info, 4, "weight");
    a.sum_dy = TensorArg(info, 5, "sum of gradients");
    a.sum_dy_xhat = TensorArg(info, 6, "sum of gradients times normalized inputs");
    a.count = TensorArg(info, 7, "count");
    BatchNormChecker check("syncBatchNormBackwardElemt", *a.x);
    check.Float32Input();
    check.LikeInput(*a.dy, "gradient");
    check.Vector(*a.mean, "mean");
    check.Vector(*a.var, "variance");
    check.Vector(*a.weight, "weight");
    check.Vector(*a.sum_dy, "sum of gradients");
    check.Vector(*a.sum_dy_xhat, "sum of gradients times normalized inputs");
    check.Vector(*a.count, "count");
    a.eps = check.Eps(NumberArg(info, 8, "eps"));
    a.dtype = a.x->dtype;
    a.task = Describe("syncBatchNormBackwardElemt", {a.x.get(), a.dy.get()});
    return WrapStorage(info.Env(), backend.SyncBatchNormBackwardElemt(a));
  });
}

}  // namespace cr::ops
