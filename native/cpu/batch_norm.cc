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

#include "cpu_backend.h"

namespace cr::cpu {

namespace {

using dnnl::prop_kind;
using tag = memory::format_tag;
using compat::Flags;

struct ForwardEntry {
  dnnl::batch_normalization_forward::primitive_desc pd;
  dnnl::batch_normalization_forward prim;
};

struct BackwardEntry {
  dnnl::batch_normalization_backward::primitive_desc pd;
  dnnl::batch_normalization_backward prim;
};

Desc VectorDesc(int64_t c) { return Desc({c}, memory::data_type::f32, tag::a); }

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

dnnl::batch_normalization_forward::primitive_desc TrainingPd(const dnnl::engine& engine, const Desc& md, float eps) {
  return CR_DNNL(compat::BatchNormForward(engine, prop_kind::forward_training, md, eps, Flags::use_scale | Flags::use_shift,
                                          Attr()));
}

// Running statistics are written through a raw pointer on the worker, so their memory must be
// the plain vector.
void RequirePlainVector(const CpuStorage& s, const char* what) {
  if (s.md != VectorDesc(s.dims[0])) {
    ThrowRangeError("batchNormForwardTraining: " + std::string(what) + " is not a plain [C] buffer");
  }
}

// PyTorch's rule: running = (1 - momentum) * running + momentum * batch statistic, the variance
// made unbiased by n / (n - 1), in double like PyTorch's CPU kernel. A single value per channel
// (n = 1), which PyTorch refuses in training, keeps its biased variance (0) rather than NaN.
void UpdateRunning(const CpuStorage& mean, const CpuStorage& var, CpuStorage* rm, CpuStorage* rv, double momentum,
                   int64_t n) {
  const float* m = static_cast<const float*>(mean.data);
  const float* v = static_cast<const float*>(var.data);
  const int64_t c = mean.dims[0];
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

}  // namespace

BatchNormTrainingOutputs CpuBackend::BatchNormForwardTraining(const BatchNormForwardTrainingArgs& a) {
  CpuStoragePtr x = Cpu(a.x), rm = Cpu(a.running_mean), rv = Cpu(a.running_var);
  if (rm) RequirePlainVector(*rm, "running mean");
  if (rv) RequirePlainVector(*rv, "running variance");
  const int64_t c = x->dims[1];
  const float eps = a.eps;
  auto e = Cached<ForwardEntry>(Key("bn_fwd_training", x->md, eps), [&] {
    auto pd = TrainingPd(engine_, x->md, eps);
    return std::make_shared<ForwardEntry>(ForwardEntry{pd, CR_DNNL(dnnl::batch_normalization_forward(pd))});
  });
  CpuStoragePtr ws = InLayout(Cpu(a.weight), VectorDesc(c));
  CpuStoragePtr bs = InLayout(Cpu(a.bias), VectorDesc(c));
  CpuStoragePtr y = Alloc(x->dims, a.dtype, e->pd.dst_desc());
  CpuStoragePtr mean = Alloc({c}, DType::kFloat32, VectorDesc(c));
  CpuStoragePtr var = Alloc({c}, DType::kFloat32, VectorDesc(c));
  const int64_t n = x->dims[0] * x->dims[2] * x->dims[3];
  const double momentum = a.momentum;
  Push(a.task, [this, e, x, ws, bs, y, mean, var, rm, rv, momentum, n] {
    CR_DNNL(Execute(e->pd, e->prim, {{DNNL_ARG_SRC, Mem(*x)},
                              {DNNL_ARG_SCALE, Mem(*ws)},
                              {DNNL_ARG_SHIFT, Mem(*bs)},
                              {DNNL_ARG_DST, Mem(*y)},
                              {DNNL_ARG_MEAN, Mem(*mean)},
                              {DNNL_ARG_VARIANCE, Mem(*var)}}));
    // The host reads the statistics next, so the primitive must have finished.
    CR_DNNL(stream_.wait());
    UpdateRunning(*mean, *var, rm.get(), rv.get(), momentum, n);
  });
  return {y, mean, var};
}

StoragePtr CpuBackend::BatchNormForwardInference(const BatchNormForwardInferenceArgs& a) {
  CpuStoragePtr x = Cpu(a.x);
  const int64_t c = x->dims[1];
  const float eps = a.eps;
  auto e = Cached<ForwardEntry>(Key("bn_fwd_inference", x->md, eps), [&] {
    auto pd = CR_DNNL(compat::BatchNormForward(engine_, prop_kind::forward_inference, x->md, eps,
                                               Flags::use_global_stats | Flags::use_scale | Flags::use_shift, Attr()));
    return std::make_shared<ForwardEntry>(ForwardEntry{pd, CR_DNNL(dnnl::batch_normalization_forward(pd))});
  });
  CpuStoragePtr ws = InLayout(Cpu(a.weight), VectorDesc(c));
  CpuStoragePtr bs = InLayout(Cpu(a.bias), VectorDesc(c));
  CpuStoragePtr ms = InLayout(Cpu(a.mean), VectorDesc(c));
  CpuStoragePtr vs = InLayout(Cpu(a.var), VectorDesc(c));
  CpuStoragePtr y = Alloc(x->dims, a.dtype, e->pd.dst_desc());
  Push(a.task, [this, e, x, ws, bs, ms, vs, y] {
    CR_DNNL(Execute(e->pd, e->prim, {{DNNL_ARG_SRC, Mem(*x)},
                              {DNNL_ARG_SCALE, Mem(*ws)},
                              {DNNL_ARG_SHIFT, Mem(*bs)},
                              {DNNL_ARG_MEAN, Mem(*ms)},
                              {DNNL_ARG_VARIANCE, Mem(*vs)},
                              {DNNL_ARG_DST, Mem(*y)}}));
  });
  return y;
}

// saved1 is the batch mean, saved2 the biased batch variance.
BatchNormGrads CpuBackend::BatchNormBackward(const BatchNormBackwardArgs& a) {
  CpuStoragePtr x = Cpu(a.x);
  const int64_t c = x->dims[1];
  const float eps = a.eps;
  auto e = Cached<BackwardEntry>(Key("bn_bwd", x->md, eps), [&] {
    auto pd = CR_DNNL(compat::BatchNormBackward(engine_, x->md, eps, Flags::use_scale | Flags::use_shift,
                                                TrainingPd(engine_, x->md, eps), Attr()));
    return std::make_shared<BackwardEntry>(BackwardEntry{pd, CR_DNNL(dnnl::batch_normalization_backward(pd))});
  });
  CpuStoragePtr dys = InLayout(Cpu(a.dy), e->pd.diff_dst_desc());
  CpuStoragePtr ws = InLayout(Cpu(a.weight), VectorDesc(c));
  CpuStoragePtr ms = InLayout(Cpu(a.saved1), VectorDesc(c));
  CpuStoragePtr vs = InLayout(Cpu(a.saved2), VectorDesc(c));
  CpuStoragePtr dx = Alloc(x->dims, a.dtype, e->pd.diff_src_desc());
  CpuStoragePtr dw = Alloc({c}, DType::kFloat32, VectorDesc(c));
  CpuStoragePtr db = Alloc({c}, DType::kFloat32, VectorDesc(c));
  Push(a.task, [this, e, x, dys, ws, ms, vs, dx, dw, db] {
    // oneDNN 2.6 refuses to run the backward with use_shift unless a shift is passed, though the
    // gradients do not depend on it and it is never read; the weight stands in for it.
    CR_DNNL(Execute(e->pd, e->prim, {{DNNL_ARG_SRC, Mem(*x)},
                              {DNNL_ARG_DIFF_DST, Mem(*dys)},
                              {DNNL_ARG_SCALE, Mem(*ws)},
                              {DNNL_ARG_SHIFT, Mem(*ws)},
                              {DNNL_ARG_MEAN, Mem(*ms)},
                              {DNNL_ARG_VARIANCE, Mem(*vs)},
                              {DNNL_ARG_DIFF_SRC, Mem(*dx)},
                              {DNNL_ARG_DIFF_SCALE, Mem(*dw)},
                              {DNNL_ARG_DIFF_SHIFT, Mem(*db)}}));
  });
  return {dx, dw, db};
}

}  // namespace cr::cpu
