// Batch normalization over [N, C, H, W] on oneDNN: training forward, inference forward, backward,
// with the fused tails of op_args.h.
//
// The primitives run on the activation's own layout (the blocked nChw8c/nChw16c the convolution
// chose), so batch norm never reorders the activation; only a gradient that arrives in another
// layout is reordered. Weight, bias, statistics and the saved batch mean and biased variance are
// plain float32 [C] vectors, also for bfloat16 activations (oneDNN's bfloat16 batch norm computes
// in float32). The running statistics are updated in place on the worker, right after the
// primitive that computed the batch statistics: a loop over C, negligible next to the primitive.
//
// What is fused where:
// - relu(bn(x)): oneDNN's fuse_norm_relu, forward and backward. The training forward saves a
//   bit mask of the ReLU (saved3, 1 bit per element), which the backward applies while it
//   computes the batch-norm gradient: the separate relu and reluBackward passes are gone.
// - relu(bn(x) + z): this backend's own forward kernels (batch_norm_residual.h). Its backward
//   is the ReLU's backward (which is z's gradient, so it must be written anyway) followed by
//   oneDNN's batch-norm backward on it: the same passes as unfused.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "batch_norm_residual.h"
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

const Flags kAffine = Flags::use_scale | Flags::use_shift;

Flags WithRelu(Flags flags, bool relu) { return relu ? flags | Flags::fuse_norm_relu : flags; }

dnnl::batch_normalization_forward::primitive_desc TrainingPd(const dnnl::engine& engine, const Desc& md, float eps,
                                                             bool relu) {
  return CR_DNNL(compat::BatchNormForward(engine, prop_kind::forward_training, md, eps, WithRelu(kAffine, relu), Attr()));
}

// The ReLU mask of a fused training forward, with that forward's key, so that the backward can
// refuse the mask of another forward (its bits would be read for another shape or layout).
struct ReluMask : CpuStorage {
  ReluMask(const std::vector<int64_t>& dims, const Desc& md, std::string forward_key)
      : CpuStorage(dims, DType::kFloat32, md), forward_key(std::move(forward_key)) {}
  const std::string forward_key;
};

float* F(const CpuStorage& s) { return static_cast<float*>(s.data); }

// The per-channel scale γ/√(var + ε) of the residual kernels, in double like the statistics.
std::vector<float> Scale(const CpuStorage& weight, const std::vector<double>& var, float eps) {
  std::vector<float> scale(var.size());
  for (size_t i = 0; i < scale.size(); ++i) scale[i] = float(double(F(weight)[i]) / std::sqrt(var[i] + double(eps)));
  return scale;
}

std::vector<double> Widened(const CpuStorage& s) { return std::vector<double>(F(s), F(s) + s.dims[0]); }

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
  CpuStoragePtr rm = Cpu(a.running_mean), rv = Cpu(a.running_var);
  if (rm) RequirePlainVector(*rm, "running mean");
  if (rv) RequirePlainVector(*rv, "running variance");
  CpuStoragePtr x = Computable(Cpu(a.x));
  const int64_t c = x->dims[1];
  const float eps = a.eps;
  const bool relu = a.tail.relu;
  CpuStoragePtr ws = InLayout(Cpu(a.weight), VectorDesc(c));
  CpuStoragePtr bs = InLayout(Cpu(a.bias), VectorDesc(c));
  CpuStoragePtr mean = Alloc({c}, DType::kFloat32, VectorDesc(c));
  CpuStoragePtr var = Alloc({c}, DType::kFloat32, VectorDesc(c));
  const int64_t n = x->dims[0] * x->dims[2] * x->dims[3];
  const double momentum = a.momentum;
  if (a.tail.residual) {
    if (!BlockedOf(x->md)) x = InLayout(x, PlainDesc(x->dims, x->dtype));
    const BlockedLayout l = *BlockedOf(x->md);
    CpuStoragePtr z = InLayout(Cpu(a.tail.residual), x->md);
    CpuStoragePtr y = Alloc(x->dims, x->dtype, x->md);
    Push(a.task, [x, z, y, ws, bs, mean, var, rm, rv, momentum, n, eps, relu, l, c] {
      std::vector<double> m(static_cast<size_t>(c)), v(static_cast<size_t>(c));
      BatchMoments(l, x->dtype, x->data, m.data(), v.data());
      std::copy(m.begin(), m.end(), F(*mean));
      std::copy(v.begin(), v.end(), F(*var));
      const std::vector<float> scale = Scale(*ws, v, eps);
      NormalizeAddRelu(l, x->dtype, x->data, z->data, y->data, m.data(), scale.data(), F(*bs), relu);
      UpdateRunning(*mean, *var, rm.get(), rv.get(), momentum, n);
    });
    return {Stored(y, a.dtype), mean, var, nullptr};
  }
  const std::string key = Key(relu ? "bn_fwd_training_relu" : "bn_fwd_training", x->md, eps);
  auto e = Cached<ForwardEntry>(key, [&] {
    auto pd = TrainingPd(engine_, x->md, eps, relu);
    return std::make_shared<ForwardEntry>(ForwardEntry{pd, CR_DNNL(dnnl::batch_normalization_forward(pd))});
  });
  CpuStoragePtr y = Alloc(x->dims, x->dtype, e->pd.dst_desc());
  CpuStoragePtr mask = relu ? std::make_shared<ReluMask>(x->dims, e->pd.workspace_desc(), key) : nullptr;
  Push(a.task, [this, e, x, ws, bs, y, mean, var, mask, rm, rv, momentum, n] {
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, Mem(*x)},   {DNNL_ARG_SCALE, Mem(*ws)},
                                            {DNNL_ARG_SHIFT, Mem(*bs)}, {DNNL_ARG_DST, Mem(*y)},
                                            {DNNL_ARG_MEAN, Mem(*mean)}, {DNNL_ARG_VARIANCE, Mem(*var)}};
    if (mask) args[DNNL_ARG_WORKSPACE] = Mem(*mask);
    CR_DNNL(Execute(e->pd, e->prim, args));
    // The host reads the statistics next, so the primitive must have finished.
    CR_DNNL(stream_.wait());
    UpdateRunning(*mean, *var, rm.get(), rv.get(), momentum, n);
  });
  return {Stored(y, a.dtype), mean, var, mask};
}

StoragePtr CpuBackend::BatchNormForwardInference(const BatchNormForwardInferenceArgs& a) {
  CpuStoragePtr x = Computable(Cpu(a.x));
  const int64_t c = x->dims[1];
  const float eps = a.eps;
  const bool relu = a.tail.relu;
  CpuStoragePtr ws = InLayout(Cpu(a.weight), VectorDesc(c));
  CpuStoragePtr bs = InLayout(Cpu(a.bias), VectorDesc(c));
  CpuStoragePtr ms = InLayout(Cpu(a.mean), VectorDesc(c));
  CpuStoragePtr vs = InLayout(Cpu(a.var), VectorDesc(c));
  if (a.tail.residual) {
    if (!BlockedOf(x->md)) x = InLayout(x, PlainDesc(x->dims, x->dtype));
    const BlockedLayout l = *BlockedOf(x->md);
    CpuStoragePtr z = InLayout(Cpu(a.tail.residual), x->md);
    CpuStoragePtr y = Alloc(x->dims, x->dtype, x->md);
    Push(a.task, [x, z, y, ws, bs, ms, vs, eps, relu, l] {
      const std::vector<float> scale = Scale(*ws, Widened(*vs), eps);
      NormalizeAddRelu(l, x->dtype, x->data, z->data, y->data, Widened(*ms).data(), scale.data(), F(*bs), relu);
    });
    return Stored(y, a.dtype);
  }
  auto e = Cached<ForwardEntry>(Key(relu ? "bn_fwd_inference_relu" : "bn_fwd_inference", x->md, eps), [&] {
    auto pd = CR_DNNL(compat::BatchNormForward(engine_, prop_kind::forward_inference, x->md, eps,
                                               WithRelu(Flags::use_global_stats | kAffine, relu), Attr()));
    return std::make_shared<ForwardEntry>(ForwardEntry{pd, CR_DNNL(dnnl::batch_normalization_forward(pd))});
  });
  CpuStoragePtr y = Alloc(x->dims, x->dtype, e->pd.dst_desc());
  Push(a.task, [this, e, x, ws, bs, ms, vs, y] {
    CR_DNNL(Execute(e->pd, e->prim, {{DNNL_ARG_SRC, Mem(*x)},
                              {DNNL_ARG_SCALE, Mem(*ws)},
                              {DNNL_ARG_SHIFT, Mem(*bs)},
                              {DNNL_ARG_MEAN, Mem(*ms)},
                              {DNNL_ARG_VARIANCE, Mem(*vs)},
                              {DNNL_ARG_DST, Mem(*y)}}));
  });
  return Stored(y, a.dtype);
}

// saved1 is the batch mean, saved2 the biased batch variance, saved3 the ReLU mask of a fused
// relu(bn(x)) forward (null for the other tails).
BatchNormGrads CpuBackend::BatchNormBackward(const BatchNormBackwardArgs& a) {
  CpuStoragePtr x = Computable(Cpu(a.x));
  const int64_t c = x->dims[1];
  const float eps = a.eps;
  auto mask = std::dynamic_pointer_cast<ReluMask>(a.saved3);
  if (a.saved3 && (!mask || !a.relu || a.with_residual || mask->forward_key != Key("bn_fwd_training_relu", x->md, eps))) {
    ThrowRangeError("batchNormBackward: the saved tail state does not come from batchNormForwardTraining of input " +
                    x->ShapeString() + " with a ReLU tail and this eps");
  }
  // The gradient at the normalization's output: the output gradient through the ReLU, unless the
  // primitive applies the mask itself.
  StoragePtr dz = a.dy;
  if (a.relu && !mask) {
    ElementwiseArgs relu_bwd;
    relu_bwd.op = ElementwiseOp::kReluBackward;
    relu_bwd.a = a.y;
    relu_bwd.b = a.dy;
    relu_bwd.dtype = a.dtype;
    relu_bwd.task = Describe("reluBackward", {a.y.get(), a.dy.get()});
    dz = Elementwise(relu_bwd);
  }
  auto e = Cached<BackwardEntry>(Key(mask ? "bn_bwd_relu" : "bn_bwd", x->md, eps), [&] {
    auto pd = CR_DNNL(compat::BatchNormBackward(engine_, x->md, eps, WithRelu(kAffine, mask != nullptr),
                                                TrainingPd(engine_, x->md, eps, mask != nullptr), Attr()));
    return std::make_shared<BackwardEntry>(BackwardEntry{pd, CR_DNNL(dnnl::batch_normalization_backward(pd))});
  });
  CpuStoragePtr dys = InLayout(Cpu(dz), e->pd.diff_dst_desc());
  CpuStoragePtr ws = InLayout(Cpu(a.weight), VectorDesc(c));
  CpuStoragePtr ms = InLayout(Cpu(a.saved1), VectorDesc(c));
  CpuStoragePtr vs = InLayout(Cpu(a.saved2), VectorDesc(c));
  CpuStoragePtr dx = Alloc(x->dims, x->dtype, e->pd.diff_src_desc());
  CpuStoragePtr dw = Alloc({c}, DType::kFloat32, VectorDesc(c));
  CpuStoragePtr db = Alloc({c}, DType::kFloat32, VectorDesc(c));
  Push(a.task, [this, e, x, dys, ws, ms, vs, mask, dx, dw, db] {
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, Mem(*x)},
                                         {DNNL_ARG_DIFF_DST, Mem(*dys)},
                                         {DNNL_ARG_SCALE, Mem(*ws)},
                                         {DNNL_ARG_MEAN, Mem(*ms)},
                                         {DNNL_ARG_VARIANCE, Mem(*vs)},
                                         {DNNL_ARG_DIFF_SRC, Mem(*dx)},
                                         {DNNL_ARG_DIFF_SCALE, Mem(*dw)},
                                         {DNNL_ARG_DIFF_SHIFT, Mem(*db)}};
    compat::AddBatchNormBackwardShift(args, Mem(*ws));
    if (mask) args[DNNL_ARG_WORKSPACE] = Mem(*mask);
    CR_DNNL(Execute(e->pd, e->prim, std::move(args)));
  });
  return {Stored(dx, a.dtype), dw, db, a.with_residual ? dz : nullptr};
}

}  // namespace cr::cpu
