// 2-D convolution on oneDNN: forward (with or without bias), backward data, backward weights.
//
// Source, destination and weights use format_tag::any, so oneDNN picks its blocked layouts
// (a plain-NCHW convolution is several times slower). Weights are kept plain (OIHW) as
// parameters, because the optimizer and the user see them, and are reordered per call; that is
// cheap next to the convolution. Grouped convolutions read the plain [O, C/g, kh, kw] weights
// as oneDNN's 5-D [g, O/g, C/g, kh, kw], which is the same memory.
#include "cpu_context.h"
#include "ops.h"

namespace cr::cpu {

namespace {

using dnnl::algorithm;
using dnnl::prop_kind;
using tag = memory::format_tag;
using dt = memory::data_type;

struct ConvParams {
  std::vector<int64_t> x, w, y;  // logical dims
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups;
  bool bias;

  std::string Key(const char* op) const {
    std::string k = op;
    k += ';';
    AppendInts(k, x);
    AppendInts(k, w);
    AppendInts(k, stride);
    AppendInts(k, padding);
    AppendInts(k, dilation);
    k += std::to_string(groups) + (bias ? "b" : "n");
    return k;
  }

  Desc AnyDesc(const std::vector<int64_t>& d) const { return Desc(Dims(d), dt::f32, tag::any); }
  memory::dims WeightDims() const {
    if (groups == 1) return Dims(w);
    return {groups, w[0] / groups, w[1], w[2], w[3]};
  }
  Desc AnyWeights() const { return Desc(WeightDims(), dt::f32, tag::any); }
  Desc PlainWeights() const { return Desc(WeightDims(), dt::f32, groups == 1 ? tag::oihw : tag::goihw); }
  Desc BiasDesc() const { return bias ? Desc({w[0]}, dt::f32, tag::a) : Desc(); }

  // oneDNN counts dilation from 0 (no dilation), PyTorch from 1.
  memory::dims Dilation() const { return {dilation[0] - 1, dilation[1] - 1}; }
  // Right padding such that oneDNN's output size equals PyTorch's floor division.
  memory::dims PadRight() const {
    memory::dims pad_r(2);
    for (int i = 0; i < 2; ++i) {
      int64_t k_eff = (w[2 + i] - 1) * dilation[i] + 1;
      pad_r[i] = (y[2 + i] - 1) * stride[i] + k_eff - x[2 + i] - padding[i];
    }
    return pad_r;
  }

  dnnl::convolution_forward::desc ForwardDesc() const {
    return dnnl::convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct,
                                           AnyDesc(x), AnyWeights(), BiasDesc(), AnyDesc(y), Dims(stride),
                                           Dilation(), Dims(padding), PadRight());
  }
};

// Reads and checks the geometry arguments shared by the three entry points, starting at `i`.
ConvParams ReadParams(const Napi::CallbackInfo& info, size_t i, const std::vector<int64_t>& x,
                      const std::vector<int64_t>& w, bool bias) {
  ConvParams p;
  p.x = x;
  p.w = w;
  p.bias = bias;
  p.stride = IntsArg(info, i, "stride", 2);
  p.padding = IntsArg(info, i + 1, "padding", 2);
  p.dilation = IntsArg(info, i + 2, "dilation", 2);
  p.groups = IntArg(info, i + 3, "groups");
  Napi::Env env = info.Env();
  auto bad = [&](const std::string& why) {
    throw Napi::RangeError::New(env, "conv2d: " + why + " (input " + ShapeString(x) + ", weight " + ShapeString(w) + ")");
  };
  if (x.size() != 4 || w.size() != 4) bad("expected 4-D input and weight");
  for (int k = 0; k < 2; ++k) {
    if (p.stride[k] < 1 || p.dilation[k] < 1 || p.padding[k] < 0) bad("stride and dilation must be >= 1, padding >= 0");
  }
  if (p.groups < 1 || x[1] % p.groups != 0 || w[0] % p.groups != 0 || w[1] * p.groups != x[1]) {
    bad("channels do not match groups = " + std::to_string(p.groups));
  }
  p.y = ConvOutputDims(x, w, p.stride, p.padding, p.dilation);
  if (p.y[2] < 1 || p.y[3] < 1) bad("the kernel does not fit the padded input");
  // The backward ops take the input or weight shape as an argument, and a huge padding makes a
  // huge output: bound all three, as every allocation is, before oneDNN computes byte counts
  // from them (an overflowed count allocates a small buffer the convolution then writes past).
  CheckedNumel(env, x);
  CheckedNumel(env, w);
  CheckedNumel(env, p.y);
  return p;
}

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

dnnl::convolution_forward::primitive_desc ForwardPd(CpuContext& ctx, const ConvParams& p) {
  return CR_DNNL(dnnl::convolution_forward::primitive_desc(p.ForwardDesc(), Attr(), ctx.engine));
}

// conv2dForward(x, w, bias | null, stride, padding, dilation, groups) -> y
Napi::Value Forward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "conv2d", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr x = Arg(env, info[0], "input");
    CpuStoragePtr w = Arg(env, info[1], "weight");
    CpuStoragePtr b = OptionalArg(env, info[2], "bias");
    ConvParams p = ReadParams(info, 3, x->dims, w->dims, b != nullptr);
    if (b && (b->dims.size() != 1 || b->dims[0] != w->dims[0])) {
      throw Napi::RangeError::New(env, "conv2d: bias must have shape [" + std::to_string(w->dims[0]) + "], got " + b->ShapeString());
    }
    auto e = ctx.Cached<ForwardEntry>(p.Key("conv_fwd"), [&] {
      auto pd = ForwardPd(ctx, p);
      return ForwardEntry{pd, CR_DNNL(dnnl::convolution_forward(pd))};
    });
    CpuStoragePtr xs = InLayout(ctx, x, e->pd.src_desc());
    CpuStoragePtr ws = InLayout(ctx, w, e->pd.weights_desc(), p.PlainWeights());
    CpuStoragePtr bs = b ? InLayout(ctx, b, p.BiasDesc()) : nullptr;
    CpuStoragePtr y = Alloc(p.y, DType::kFloat32, e->pd.dst_desc());
    ctx.queue.Push(Describe("conv2d", {x.get(), w.get()}), [&ctx, e, xs, ws, bs, y] {
      std::unordered_map<int, memory> args = {
          {DNNL_ARG_SRC, Mem(ctx, *xs)}, {DNNL_ARG_WEIGHTS, Mem(ctx, *ws, e->pd.weights_desc())}, {DNNL_ARG_DST, Mem(ctx, *y)}};
      if (bs) args[DNNL_ARG_BIAS] = Mem(ctx, *bs);
      CR_DNNL(Execute(ctx, e->prim, args));
    });
    return WrapStorage(env, y);
  });
}

// conv2dBackwardData(dy, w, xShape, stride, padding, dilation, groups) -> dx
Napi::Value BackwardData(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "conv2dBackwardData", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr dy = Arg(env, info[0], "gradient");
    CpuStoragePtr w = Arg(env, info[1], "weight");
    std::vector<int64_t> xdims = IntsArg(info, 2, "input shape", 4);
    ConvParams p = ReadParams(info, 3, xdims, w->dims, false);
    if (dy->dims != p.y) {
      throw Napi::RangeError::New(env, "conv2dBackwardData: gradient of shape " + dy->ShapeString() + " does not match output " + ShapeString(p.y));
    }
    auto e = ctx.Cached<BackwardDataEntry>(p.Key("conv_bwd_data"), [&] {
      auto hint = ForwardPd(ctx, p);
      dnnl::convolution_backward_data::desc d(algorithm::convolution_direct, p.AnyDesc(p.x), p.AnyWeights(),
                                              p.AnyDesc(p.y), Dims(p.stride), p.Dilation(), Dims(p.padding),
                                              p.PadRight());
      auto pd = CR_DNNL(dnnl::convolution_backward_data::primitive_desc(d, Attr(), ctx.engine, hint));
      return BackwardDataEntry{pd, CR_DNNL(dnnl::convolution_backward_data(pd))};
    });
    CpuStoragePtr dys = InLayout(ctx, dy, e->pd.diff_dst_desc());
    CpuStoragePtr ws = InLayout(ctx, w, e->pd.weights_desc(), p.PlainWeights());
    CpuStoragePtr dx = Alloc(p.x, DType::kFloat32, e->pd.diff_src_desc());
    ctx.queue.Push(Describe("conv2dBackwardData", {dy.get(), w.get()}), [&ctx, e, dys, ws, dx] {
      CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_DIFF_DST, Mem(ctx, *dys)},
                                           {DNNL_ARG_WEIGHTS, Mem(ctx, *ws, e->pd.weights_desc())},
                                           {DNNL_ARG_DIFF_SRC, Mem(ctx, *dx)}}));
    });
    return WrapStorage(env, dx);
  });
}

// conv2dBackwardWeights(x, dy, wShape, withBias, stride, padding, dilation, groups) -> [dw, db | null]
Napi::Value BackwardWeights(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "conv2dBackwardWeights", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr x = Arg(env, info[0], "input");
    CpuStoragePtr dy = Arg(env, info[1], "gradient");
    std::vector<int64_t> wdims = IntsArg(info, 2, "weight shape", 4);
    bool with_bias = BoolArg(info, 3, "withBias");
    ConvParams p = ReadParams(info, 4, x->dims, wdims, with_bias);
    if (dy->dims != p.y) {
      throw Napi::RangeError::New(env, "conv2dBackwardWeights: gradient of shape " + dy->ShapeString() + " does not match output " + ShapeString(p.y));
    }
    auto e = ctx.Cached<BackwardWeightsEntry>(p.Key("conv_bwd_weights"), [&] {
      auto hint = ForwardPd(ctx, p);
      dnnl::convolution_backward_weights::desc d(algorithm::convolution_direct, p.AnyDesc(p.x), p.AnyWeights(),
                                                 p.BiasDesc(), p.AnyDesc(p.y), Dims(p.stride), p.Dilation(),
                                                 Dims(p.padding), p.PadRight());
      auto pd = CR_DNNL(dnnl::convolution_backward_weights::primitive_desc(d, Attr(), ctx.engine, hint));
      return BackwardWeightsEntry{pd, CR_DNNL(dnnl::convolution_backward_weights(pd))};
    });
    CpuStoragePtr xs = InLayout(ctx, x, e->pd.src_desc());
    CpuStoragePtr dys = InLayout(ctx, dy, e->pd.diff_dst_desc());
    // The weight gradient is produced in oneDNN's layout and handed back plain, like the weight.
    const Desc native_dw = e->pd.diff_weights_desc();
    const bool direct = native_dw == p.PlainWeights();
    CpuStoragePtr dw = Alloc(wdims, DType::kFloat32, PlainDesc(wdims, DType::kFloat32));
    CpuStoragePtr dw_native = direct ? dw : Alloc(wdims, DType::kFloat32, native_dw);
    CpuStoragePtr db = with_bias ? Alloc({wdims[0]}, DType::kFloat32, p.BiasDesc()) : nullptr;
    ctx.queue.Push(Describe("conv2dBackwardWeights", {x.get(), dy.get()}), [&ctx, e, xs, dys, dw_native, native_dw, db] {
      std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, Mem(ctx, *xs)},
                                              {DNNL_ARG_DIFF_DST, Mem(ctx, *dys)},
                                              {DNNL_ARG_DIFF_WEIGHTS, Mem(ctx, *dw_native, native_dw)}};
      if (db) args[DNNL_ARG_DIFF_BIAS] = Mem(ctx, *db);
      CR_DNNL(Execute(ctx, e->prim, args));
    });
    if (!direct) EnqueueReorder(ctx, dw_native, native_dw, dw, p.PlainWeights());
    return Tuple(env, {WrapStorage(env, dw), db ? Napi::Value(WrapStorage(env, db)) : env.Null()});
  });
}

}  // namespace

void RegisterConv2d(Napi::Env env, Napi::Object exports) {
  exports.Set("conv2dForward", Napi::Function::New(env, Forward, "conv2dForward"));
  exports.Set("conv2dBackwardData", Napi::Function::New(env, BackwardData, "conv2dBackwardData"));
  exports.Set("conv2dBackwardWeights", Napi::Function::New(env, BackwardWeights, "conv2dBackwardWeights"));
}

}  // namespace cr::cpu
