// Fully connected layer (y = x·wᵀ + b) on oneDNN's inner product, forward and backward.
//
// Every tensor is plain row-major: the layer is small (the classifier head), its input comes
// from a reshape and its weights are parameters the optimizer updates in place, so a blocked
// layout would only add reorders.
#include "cpu_context.h"
#include "ops.h"

namespace cr::cpu {

namespace {

using dnnl::prop_kind;

struct LinearParams {
  int64_t n, in, out;
  bool bias;

  std::string Key(const char* op) const {
    std::string k = op;
    k += ';';
    AppendInts(k, {n, in, out});
    k += bias ? "b" : "n";
    return k;
  }

  Desc Src() const { return PlainDesc({n, in}, DType::kFloat32); }
  Desc Weights() const { return PlainDesc({out, in}, DType::kFloat32); }
  Desc Bias() const { return bias ? PlainDesc({out}, DType::kFloat32) : Desc(); }
  Desc Dst() const { return PlainDesc({n, out}, DType::kFloat32); }
};

// Checks x [N, in] and w [out, in].
LinearParams ReadParams(Napi::Env env, const CpuStoragePtr& x, const CpuStoragePtr& w, bool bias) {
  RequireFloat(env, *x, "input");
  RequireFloat(env, *w, "weight");
  if (x->dims.size() != 2 || w->dims.size() != 2 || x->dims[1] != w->dims[1]) {
    throw Napi::RangeError::New(env, OpScope::CurrentOp() + ": expected input [N, in] and weight [out, in], got " +
                                         x->ShapeString() + " and " + w->ShapeString());
  }
  return LinearParams{x->dims[0], x->dims[1], w->dims[0], bias};
}

struct ForwardEntry {
  dnnl::inner_product_forward::primitive_desc pd;
  dnnl::inner_product_forward prim;
};

struct BackwardEntry {
  dnnl::inner_product_backward_data::primitive_desc data_pd;
  dnnl::inner_product_backward_data data_prim;
  dnnl::inner_product_backward_weights::primitive_desc weights_pd;
  dnnl::inner_product_backward_weights weights_prim;
};

dnnl::inner_product_forward::primitive_desc ForwardPd(CpuContext& ctx, const LinearParams& p) {
  auto d = CR_DNNL(dnnl::inner_product_forward::desc(prop_kind::forward_training, p.Src(), p.Weights(), p.Bias(), p.Dst()));
  return CR_DNNL(dnnl::inner_product_forward::primitive_desc(d, Attr(), ctx.engine));
}

// linearForward(x, w, bias | null) -> y
Napi::Value Forward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "linear", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr x = Arg(env, info[0], "input");
    CpuStoragePtr w = Arg(env, info[1], "weight");
    CpuStoragePtr b = OptionalArg(env, info[2], "bias");
    LinearParams p = ReadParams(env, x, w, b != nullptr);
    if (b) {
      RequireFloat(env, *b, "bias");
      if (b->dims != std::vector<int64_t>{p.out}) {
        throw Napi::RangeError::New(env, "linear: bias must have shape [" + std::to_string(p.out) + "], got " + b->ShapeString());
      }
    }
    auto e = ctx.Cached<ForwardEntry>(p.Key("linear_fwd"), [&] {
      auto pd = ForwardPd(ctx, p);
      return ForwardEntry{pd, CR_DNNL(dnnl::inner_product_forward(pd))};
    });
    CpuStoragePtr xs = InLayout(ctx, x, e->pd.src_desc());
    CpuStoragePtr ws = InLayout(ctx, w, e->pd.weights_desc());
    CpuStoragePtr bs = b ? InLayout(ctx, b, e->pd.bias_desc()) : nullptr;
    CpuStoragePtr y = Alloc({p.n, p.out}, DType::kFloat32, e->pd.dst_desc());
    ctx.queue.Push(Describe("linear", {x.get(), w.get()}), [&ctx, e, xs, ws, bs, y] {
      std::unordered_map<int, memory> args = {
          {DNNL_ARG_SRC, Mem(ctx, *xs)}, {DNNL_ARG_WEIGHTS, Mem(ctx, *ws)}, {DNNL_ARG_DST, Mem(ctx, *y)}};
      if (bs) args[DNNL_ARG_BIAS] = Mem(ctx, *bs);
      CR_DNNL(Execute(ctx, e->prim, args));
    });
    return WrapStorage(env, y);
  });
}

// linearBackward(x, w, dy, withBias) -> [dx, dw, dbias | null]
Napi::Value Backward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "linearBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr x = Arg(env, info[0], "input");
    CpuStoragePtr w = Arg(env, info[1], "weight");
    CpuStoragePtr dy = Arg(env, info[2], "gradient");
    bool with_bias = BoolArg(info, 3, "withBias");
    LinearParams p = ReadParams(env, x, w, with_bias);
    RequireFloat(env, *dy, "gradient");
    if (dy->dims != std::vector<int64_t>{p.n, p.out}) {
      throw Napi::RangeError::New(env, "linearBackward: gradient of shape " + dy->ShapeString() + " does not match output " +
                                           ShapeString({p.n, p.out}));
    }
    auto e = ctx.Cached<BackwardEntry>(p.Key("linear_bwd"), [&] {
      auto hint = ForwardPd(ctx, p);
      auto dd = CR_DNNL(dnnl::inner_product_backward_data::desc(p.Src(), p.Weights(), p.Dst()));
      auto data_pd = CR_DNNL(dnnl::inner_product_backward_data::primitive_desc(dd, Attr(), ctx.engine, hint));
      auto wd = CR_DNNL(dnnl::inner_product_backward_weights::desc(p.Src(), p.Weights(), p.Bias(), p.Dst()));
      auto weights_pd = CR_DNNL(dnnl::inner_product_backward_weights::primitive_desc(wd, Attr(), ctx.engine, hint));
      return BackwardEntry{data_pd, CR_DNNL(dnnl::inner_product_backward_data(data_pd)), weights_pd,
                           CR_DNNL(dnnl::inner_product_backward_weights(weights_pd))};
    });
    CpuStoragePtr xs = InLayout(ctx, x, e->weights_pd.src_desc());
    CpuStoragePtr ws = InLayout(ctx, w, e->data_pd.weights_desc());
    CpuStoragePtr dys = InLayout(ctx, dy, e->data_pd.diff_dst_desc());
    CpuStoragePtr dx = Alloc(x->dims, DType::kFloat32, e->data_pd.diff_src_desc());
    CpuStoragePtr dw = Alloc(w->dims, DType::kFloat32, e->weights_pd.diff_weights_desc());
    CpuStoragePtr db = with_bias ? Alloc({p.out}, DType::kFloat32, e->weights_pd.diff_bias_desc()) : nullptr;
    ctx.queue.Push(Describe("linearBackward", {x.get(), w.get(), dy.get()}), [&ctx, e, xs, ws, dys, dx, dw, db] {
      CR_DNNL(Execute(ctx, e->data_prim, {{DNNL_ARG_DIFF_DST, Mem(ctx, *dys)},
                                                {DNNL_ARG_WEIGHTS, Mem(ctx, *ws)},
                                                {DNNL_ARG_DIFF_SRC, Mem(ctx, *dx)}}));
      std::unordered_map<int, memory> args = {
          {DNNL_ARG_SRC, Mem(ctx, *xs)}, {DNNL_ARG_DIFF_DST, Mem(ctx, *dys)}, {DNNL_ARG_DIFF_WEIGHTS, Mem(ctx, *dw)}};
      if (db) args[DNNL_ARG_DIFF_BIAS] = Mem(ctx, *db);
      CR_DNNL(Execute(ctx, e->weights_prim, args));
    });
    return Tuple(env, {WrapStorage(env, dx), WrapStorage(env, dw), db ? Napi::Value(WrapStorage(env, db)) : env.Null()});
  });
}

}  // namespace

void RegisterLinear(Napi::Env env, Napi::Object exports) {
  exports.Set("linearForward", Napi::Function::New(env, Forward, "linearForward"));
  exports.Set("linearBackward", Napi::Function::New(env, Backward, "linearBackward"));
}

}  // namespace cr::cpu
