// Batch normalization over [N, C, H, W] on oneDNN: training forward, inference forward, backward.
//
// The primitives run on the activation's own layout (the blocked nChw8c/nChw16c the convolution
// chose), so batch norm never reorders the activation; only a gradient that arrives in another
// layout is reordered. Weight, bias, statistics and the saved batch mean and biased variance are
// plain [C] vectors. The running statistics are updated in place on the worker, right after the
// primitive that computed the batch statistics: a loop over C, negligible next to the primitive.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu_context.h"
#include "ops.h"

namespace cr::cpu {

namespace {

using dnnl::prop_kind;
using tag = memory::format_tag;
using dt = memory::data_type;
using Flags = dnnl::normalization_flags;

struct ForwardEntry {
  dnnl::batch_normalization_forward::primitive_desc pd;
  dnnl::batch_normalization_forward prim;
};

struct BackwardEntry {
  dnnl::batch_normalization_backward::primitive_desc pd;
  dnnl::batch_normalization_backward prim;
};

Desc VectorDesc(int64_t c) { return Desc({c}, dt::f32, tag::a); }

// oneDNN takes epsilon as a float, so the key holds the float's bits: two doubles that round
// to the same float share a primitive, two that do not never do.
std::string Key(const char* op, const Desc& md, float eps) {
  std::string k = op;
  k += ';';
  AppendDesc(k, md);
  uint32_t bits;
  std::memcpy(&bits, &eps, sizeof bits);
  k += std::to_string(bits);
  return k;
}

// The shared checks, and one of oneDNN's: running statistics are written through a raw pointer,
// so their memory must be the plain vector.
class Checker : public BatchNormChecker {
 public:
  using BatchNormChecker::BatchNormChecker;

  void Running(const CpuStorage& s, const char* what) const {
    Vector(s, what);
    if (s.md != VectorDesc(channels())) Bad(std::string(what) + " is not a plain [C] buffer");
  }
};

dnnl::batch_normalization_forward::primitive_desc TrainingPd(CpuContext& ctx, const Desc& md, float eps) {
  return CR_DNNL(dnnl::batch_normalization_forward::primitive_desc(
      dnnl::batch_normalization_forward::desc(prop_kind::forward_training, md, eps, Flags::use_scale | Flags::use_shift), Attr(), ctx.engine));
}

// PyTorch's rule: running = (1 - momentum) * running + momentum * batch statistic, the variance
// made unbiased by n / (n - 1), in double like PyTorch's CPU kernel. A single value per channel
// (n = 1), which PyTorch refuses in training, keeps its biased variance (0) rather than NaN.
void UpdateRunning(const CpuStoragePtr& mean, const CpuStoragePtr& var, const CpuStoragePtr& rm,
                   const CpuStoragePtr& rv, double momentum, int64_t n) {
  const float* m = static_cast<const float*>(mean->data);
  const float* v = static_cast<const float*>(var->data);
  const int64_t c = mean->dims[0];
  if (rm) {
    float* r = static_cast<float*>(rm->data);
    for (int64_t i = 0; i < c; ++i) r[i] = static_cast<float>(momentum * m[i] + (1 - momentum) * r[i]);
  }
  if (rv) {
    const double unbias = double(n) / double(std::max<int64_t>(n - 1, 1));
    float* r = static_cast<float*>(rv->data);
    for (int64_t i = 0; i < c; ++i) r[i] = static_cast<float>(momentum * v[i] * unbias + (1 - momentum) * r[i]);
  }
}

// batchNormForwardTraining(x, weight, bias, runningMean | null, runningVar | null, momentum, eps)
//   -> [y, mean, biased variance]
Napi::Value ForwardTraining(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "batchNormForwardTraining", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr x = Arg(env, info[0], "input");
    CpuStoragePtr w = Arg(env, info[1], "weight");
    CpuStoragePtr b = Arg(env, info[2], "bias");
    CpuStoragePtr rm = OptionalArg(env, info[3], "running mean");
    CpuStoragePtr rv = OptionalArg(env, info[4], "running variance");
    double momentum = NumberArg(info, 5, "momentum");
    Checker check(env, "batchNormForwardTraining", *x);
    check.Vector(*w, "weight");
    check.Vector(*b, "bias");
    if (rm) check.Running(*rm, "running mean");
    if (rv) check.Running(*rv, "running variance");
    check.Momentum(momentum);
    float eps = check.Eps(NumberArg(info, 6, "eps"));
    const int64_t c = check.channels();

    auto e = ctx.Cached<ForwardEntry>(Key("bn_fwd_training", x->md, eps), [&] {
      auto pd = TrainingPd(ctx, x->md, eps);
      return ForwardEntry{pd, CR_DNNL(dnnl::batch_normalization_forward(pd))};
    });
    CpuStoragePtr ws = InLayout(ctx, w, VectorDesc(c));
    CpuStoragePtr bs = InLayout(ctx, b, VectorDesc(c));
    CpuStoragePtr y = Alloc(x->dims, DType::kFloat32, e->pd.dst_desc());
    CpuStoragePtr mean = Alloc({c}, DType::kFloat32, VectorDesc(c));
    CpuStoragePtr var = Alloc({c}, DType::kFloat32, VectorDesc(c));
    const int64_t n = x->dims[0] * x->dims[2] * x->dims[3];
    ctx.queue.Push(Describe("batchNormForwardTraining", {x.get(), w.get()}),
                   [&ctx, e, x, ws, bs, y, mean, var, rm, rv, momentum, n] {
                     CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_SRC, Mem(ctx, *x)},
                                                          {DNNL_ARG_SCALE, Mem(ctx, *ws)},
                                                          {DNNL_ARG_SHIFT, Mem(ctx, *bs)},
                                                          {DNNL_ARG_DST, Mem(ctx, *y)},
                                                          {DNNL_ARG_MEAN, Mem(ctx, *mean)},
                                                          {DNNL_ARG_VARIANCE, Mem(ctx, *var)}}));
                     // The host reads the statistics next, so the primitive must have finished.
                     CR_DNNL(ctx.stream.wait());
                     UpdateRunning(mean, var, rm, rv, momentum, n);
                   });
    return Tuple(env, {WrapStorage(env, y), WrapStorage(env, mean), WrapStorage(env, var)});
  });
}

// batchNormForwardInference(x, weight, bias, mean, variance, eps) -> y
Napi::Value ForwardInference(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "batchNormForwardInference", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr x = Arg(env, info[0], "input");
    CpuStoragePtr w = Arg(env, info[1], "weight");
    CpuStoragePtr b = Arg(env, info[2], "bias");
    CpuStoragePtr mean = Arg(env, info[3], "mean");
    CpuStoragePtr var = Arg(env, info[4], "variance");
    Checker check(env, "batchNormForwardInference", *x);
    check.Vector(*w, "weight");
    check.Vector(*b, "bias");
    check.Vector(*mean, "mean");
    check.Vector(*var, "variance");
    float eps = check.Eps(NumberArg(info, 5, "eps"));
    const int64_t c = check.channels();

    auto e = ctx.Cached<ForwardEntry>(Key("bn_fwd_inference", x->md, eps), [&] {
      auto pd = CR_DNNL(dnnl::batch_normalization_forward::primitive_desc(
          dnnl::batch_normalization_forward::desc(prop_kind::forward_inference, x->md, eps,
                                                  Flags::use_global_stats | Flags::use_scale | Flags::use_shift), Attr(), ctx.engine));
      return ForwardEntry{pd, CR_DNNL(dnnl::batch_normalization_forward(pd))};
    });
    CpuStoragePtr ws = InLayout(ctx, w, VectorDesc(c));
    CpuStoragePtr bs = InLayout(ctx, b, VectorDesc(c));
    CpuStoragePtr ms = InLayout(ctx, mean, VectorDesc(c));
    CpuStoragePtr vs = InLayout(ctx, var, VectorDesc(c));
    CpuStoragePtr y = Alloc(x->dims, DType::kFloat32, e->pd.dst_desc());
    ctx.queue.Push(Describe("batchNormForwardInference", {x.get(), w.get()}), [&ctx, e, x, ws, bs, ms, vs, y] {
      CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_SRC, Mem(ctx, *x)},
                                           {DNNL_ARG_SCALE, Mem(ctx, *ws)},
                                           {DNNL_ARG_SHIFT, Mem(ctx, *bs)},
                                           {DNNL_ARG_MEAN, Mem(ctx, *ms)},
                                           {DNNL_ARG_VARIANCE, Mem(ctx, *vs)},
                                           {DNNL_ARG_DST, Mem(ctx, *y)}}));
    });
    return WrapStorage(env, y);
  });
}

// batchNormBackward(x, dy, weight, mean, biased variance, eps) -> [dx, dweight, dbias]
Napi::Value Backward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "batchNormBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr x = Arg(env, info[0], "input");
    CpuStoragePtr dy = Arg(env, info[1], "gradient");
    CpuStoragePtr w = Arg(env, info[2], "weight");
    CpuStoragePtr mean = Arg(env, info[3], "saved mean");
    CpuStoragePtr var = Arg(env, info[4], "saved variance");
    Checker check(env, "batchNormBackward", *x);
    check.Gradient(*dy);
    check.Vector(*w, "weight");
    check.Vector(*mean, "saved mean");
    check.Vector(*var, "saved variance");
    float eps = check.Eps(NumberArg(info, 5, "eps"));
    const int64_t c = check.channels();

    auto e = ctx.Cached<BackwardEntry>(Key("bn_bwd", x->md, eps), [&] {
      auto hint = TrainingPd(ctx, x->md, eps);
      auto pd = CR_DNNL(dnnl::batch_normalization_backward::primitive_desc(
          dnnl::batch_normalization_backward::desc(prop_kind::backward, x->md, x->md, eps,
                                                   Flags::use_scale | Flags::use_shift), Attr(), ctx.engine, hint));
      return BackwardEntry{pd, CR_DNNL(dnnl::batch_normalization_backward(pd))};
    });
    CpuStoragePtr dys = InLayout(ctx, dy, e->pd.diff_dst_desc());
    CpuStoragePtr ws = InLayout(ctx, w, VectorDesc(c));
    CpuStoragePtr ms = InLayout(ctx, mean, VectorDesc(c));
    CpuStoragePtr vs = InLayout(ctx, var, VectorDesc(c));
    CpuStoragePtr dx = Alloc(x->dims, DType::kFloat32, e->pd.diff_src_desc());
    CpuStoragePtr dw = Alloc({c}, DType::kFloat32, VectorDesc(c));
    CpuStoragePtr db = Alloc({c}, DType::kFloat32, VectorDesc(c));
    ctx.queue.Push(Describe("batchNormBackward", {x.get(), dy.get()}), [&ctx, e, x, dys, ws, ms, vs, dx, dw, db] {
      // oneDNN 2.6 refuses to run the backward with use_shift unless a shift is passed, though
      // the gradients do not depend on it and it is never read; the weight stands in for it.
      CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_SRC, Mem(ctx, *x)},
                                           {DNNL_ARG_DIFF_DST, Mem(ctx, *dys)},
                                           {DNNL_ARG_SCALE, Mem(ctx, *ws)},
                                           {DNNL_ARG_SHIFT, Mem(ctx, *ws)},
                                           {DNNL_ARG_MEAN, Mem(ctx, *ms)},
                                           {DNNL_ARG_VARIANCE, Mem(ctx, *vs)},
                                           {DNNL_ARG_DIFF_SRC, Mem(ctx, *dx)},
                                           {DNNL_ARG_DIFF_SCALE, Mem(ctx, *dw)},
                                           {DNNL_ARG_DIFF_SHIFT, Mem(ctx, *db)}}));
    });
    return Tuple(env, {WrapStorage(env, dx), WrapStorage(env, dw), WrapStorage(env, db)});
  });
}

}  // namespace

void RegisterBatchNorm(Napi::Env env, Napi::Object exports) {
  exports.Set("batchNormForwardTraining", Napi::Function::New(env, ForwardTraining, "batchNormForwardTraining"));
  exports.Set("batchNormForwardInference", Napi::Function::New(env, ForwardInference, "batchNormForwardInference"));
  exports.Set("batchNormBackward", Napi::Function::New(env, Backward, "batchNormBackward"));
}

}  // namespace cr::cpu
