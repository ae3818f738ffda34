// 2-D convolution on oneDNN: forward (with or without bias), backward data, backward weights.
//
// Source, destination and weights use format_tag::any, so oneDNN picks its blocked layouts
// (a plain-NCHW convolution is several times slower). Weights are kept plain (OIHW) as
// parameters, because the optimizer and the user see them, and are reordered per call; that is
// cheap next to the convolution. Grouped convolutions read the plain [O, C/g, kh, kw] weights
// as oneDNN's 5-D [g, O/g, C/g, kh, kw], which is the same memory.
#include "cpu_backend.h"

namespace cr::cpu {

namespace {

using dnnl::prop_kind;
using tag = memory::format_tag;

struct ConvDescs {
  const Conv2dGeometry& g;
  memory::data_type type;
  bool bias;

  std::string Key(const char* op) const {
    std::string k = op;
    k += ';';
    k += std::to_string(int(type)) + ';';
    AppendInts(k, g.x);
    AppendInts(k, g.w);
    AppendInts(k, g.stride);
    AppendInts(k, g.padding);
    AppendInts(k, g.dilation);
    k += std::to_string(g.groups) + (bias ? "b" : "n");
    return k;
  }

  Desc Any(const std::vector<int64_t>& d) const { return Desc(Dims(d), type, tag::any); }
  memory::dims WeightDims() const {
    if (g.groups == 1) return Dims(g.w);
    return {g.groups, g.w[0] / g.groups, g.w[1], g.w[2], g.w[3]};
  }
  Desc AnyWeights() const { return Desc(WeightDims(), type, tag::any); }
  Desc PlainWeights() const { return Desc(WeightDims(), type, g.groups == 1 ? tag::oihw : tag::goihw); }
  Desc Bias() const { return bias ? Desc({g.w[0]}, type, tag::a) : Desc(); }

  // oneDNN counts dilation from 0 (no dilation), PyTorch from 1.
  memory::dims Dilation() const { return {g.dilation[0] - 1, g.dilation[1] - 1}; }
  // Right padding such that oneDNN's output size equals PyTorch's floor division.
  memory::dims PadRight() const {
    memory::dims pad_r(2);
    for (int i = 0; i < 2; ++i) {
      const int64_t k_eff = (g.w[2 + i] - 1) * g.dilation[i] + 1;
      pad_r[i] = (g.y[2 + i] - 1) * g.stride[i] + k_eff - g.x[2 + i] - g.padding[i];
    }
    return pad_r;
  }

  dnnl::convolution_forward::primitive_desc ForwardPd(const dnnl::engine& engine) const {
    return CR_DNNL(compat::ConvForward(engine, prop_kind::forward_training, Any(g.x), AnyWeights(), Bias(), Any(g.y),
                                       Dims(g.stride), Dilation(), Dims(g.padding), PadRight(), Attr()));
  }
};

struct ForwardEntry {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
};

struct BackwardDataEntry {
  dnnl::convolution_backward_data::primitive_desc pd;
  dnnl::convolution_backward_data prim;
};

struct BackwardWeightsEntry {
  dnnl::convolution_backward_weights::primitive_desc pd;
  dnnl::convolution_backward_weights prim;
};

}  // namespace

StoragePtr CpuBackend::Conv2dForward(const Conv2dForwardArgs& a) {
  const ConvDescs d{a.g, DnnlType(a.dtype), a.bias != nullptr};
  auto e = Cached<ForwardEntry>(d.Key("conv_fwd"), [&] {
    auto pd = d.ForwardPd(engine_);
    return std::make_shared<ForwardEntry>(ForwardEntry{pd, CR_DNNL(dnnl::convolution_forward(pd))});
  });
  CpuStoragePtr xs = InLayout(Cpu(a.x), e->pd.src_desc());
  CpuStoragePtr ws = InLayout(Cpu(a.w), e->pd.weights_desc(), d.PlainWeights());
  CpuStoragePtr bs = a.bias ? InLayout(Cpu(a.bias), d.Bias()) : nullptr;
  CpuStoragePtr y = Alloc(a.g.y, a.dtype, e->pd.dst_desc());
  Push(a.task, [this, e, xs, ws, bs, y] {
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, Mem(*xs)}, {DNNL_ARG_WEIGHTS, Mem(*ws, e->pd.weights_desc())}, {DNNL_ARG_DST, Mem(*y)}};
    if (bs) args[DNNL_ARG_BIAS] = Mem(*bs);
    CR_DNNL(Execute(e->pd, e->prim, args));
  });
  return y;
}

StoragePtr CpuBackend::Conv2dBackwardData(const Conv2dBackwardDataArgs& a) {
  const ConvDescs d{a.g, DnnlType(a.dtype), false};
  auto e = Cached<BackwardDataEntry>(d.Key("conv_bwd_data"), [&] {
    auto pd = CR_DNNL(compat::ConvBackwardData(engine_, d.Any(a.g.x), d.AnyWeights(), d.Any(a.g.y), Dims(a.g.stride),
                                               d.Dilation(), Dims(a.g.padding), d.PadRight(), d.ForwardPd(engine_),
                                               Attr()));
    return std::make_shared<BackwardDataEntry>(BackwardDataEntry{pd, CR_DNNL(dnnl::convolution_backward_data(pd))});
  });
  CpuStoragePtr dys = InLayout(Cpu(a.dy), e->pd.diff_dst_desc());
  CpuStoragePtr ws = InLayout(Cpu(a.w), e->pd.weights_desc(), d.PlainWeights());
  CpuStoragePtr dx = Alloc(a.g.x, a.dtype, e->pd.diff_src_desc());
  Push(a.task, [this, e, dys, ws, dx] {
    CR_DNNL(Execute(e->pd, e->prim, {{DNNL_ARG_DIFF_DST, Mem(*dys)},
                              {DNNL_ARG_WEIGHTS, Mem(*ws, e->pd.weights_desc())},
                              {DNNL_ARG_DIFF_SRC, Mem(*dx)}}));
  });
  return dx;
}

Conv2dWeightGrads CpuBackend::Conv2dBackwardWeights(const Conv2dBackwardWeightsArgs& a) {
  const ConvDescs d{a.g, DnnlType(a.dtype), a.with_bias};
  auto e = Cached<BackwardWeightsEntry>(d.Key("conv_bwd_weights"), [&] {
    auto pd = CR_DNNL(compat::ConvBackwardWeights(engine_, d.Any(a.g.x), d.AnyWeights(), d.Bias(), d.Any(a.g.y),
                                                  Dims(a.g.stride), d.Dilation(), Dims(a.g.padding), d.PadRight(),
                                                  d.ForwardPd(engine_), Attr()));
    return std::make_shared<BackwardWeightsEntry>(BackwardWeightsEntry{pd, CR_DNNL(dnnl::convolution_backward_weights(pd))});
  });
  CpuStoragePtr xs = InLayout(Cpu(a.x), e->pd.src_desc());
  CpuStoragePtr dys = InLayout(Cpu(a.dy), e->pd.diff_dst_desc());
  // The weight gradient is produced in oneDNN's layout and handed back plain, like the weight.
  const Desc native_dw = e->pd.diff_weights_desc();
  const bool direct = native_dw == d.PlainWeights();
  CpuStoragePtr dw = Alloc(a.g.w, a.dtype, PlainDesc(a.g.w, a.dtype));
  CpuStoragePtr dw_native = direct ? dw : Alloc(a.g.w, a.dtype, native_dw);
  CpuStoragePtr db = a.with_bias ? Alloc({a.g.w[0]}, a.dtype, d.Bias()) : nullptr;
  Push(a.task, [this, e, xs, dys, dw_native, native_dw, db] {
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, Mem(*xs)}, {DNNL_ARG_DIFF_DST, Mem(*dys)}, {DNNL_ARG_DIFF_WEIGHTS, Mem(*dw_native, native_dw)}};
    if (db) args[DNNL_ARG_DIFF_BIAS] = Mem(*db);
    CR_DNNL(Execute(e->pd, e->prim, args));
  });
  if (!direct) EnqueueReorder(dw_native, native_dw, dw, d.PlainWeights());
  return {dw, db};
}

}  // namespace cr::cpu
