// Fully connected layer (y = x·wᵀ + b) on oneDNN's inner product, forward and backward.
//
// Every tensor is plain row-major: the layer is small (the classifier head), its input comes
// from a reshape and its weights are parameters the optimizer updates in place, so a blocked
// layout would only add reorders.
#include "cpu_backend.h"

namespace cr::cpu {

namespace {

using dnnl::prop_kind;

struct LinearDescs {
  int64_t n, in, out;
  DType dtype;
  bool bias;

  std::string Key(const char* op) const {
    std::string k = op;
    k += ';';
    AppendInts(k, {n, in, out, int64_t(dtype)});
    k += bias ? "b" : "n";
    return k;
  }

  Desc Src() const { return PlainDesc({n, in}, dtype); }
  Desc Weights() const { return PlainDesc({out, in}, dtype); }
  Desc Bias() const { return bias ? PlainDesc({out}, dtype) : Desc(); }
  Desc Dst() const { return PlainDesc({n, out}, dtype); }

  dnnl::inner_product_forward::primitive_desc ForwardPd(const dnnl::engine& engine) const {
    return CR_DNNL(compat::InnerProductForward(engine, prop_kind::forward_training, Src(), Weights(), Bias(), Dst(), Attr()));
  }
};

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

}  // namespace

StoragePtr CpuBackend::LinearForward(const LinearForwardArgs& a) {
  const LinearDescs d{a.n, a.in, a.out, a.dtype, a.bias != nullptr};
  auto e = Cached<ForwardEntry>(d.Key("linear_fwd"), [&] {
    auto pd = d.ForwardPd(engine_);
    return std::make_shared<ForwardEntry>(ForwardEntry{pd, CR_DNNL(dnnl::inner_product_forward(pd))});
  });
  CpuStoragePtr xs = InLayout(Cpu(a.x), e->pd.src_desc());
  CpuStoragePtr ws = InLayout(Cpu(a.w), e->pd.weights_desc());
  CpuStoragePtr bs = a.bias ? InLayout(Cpu(a.bias), e->pd.bias_desc()) : nullptr;
  CpuStoragePtr y = Alloc({a.n, a.out}, a.dtype, e->pd.dst_desc());
  Push(a.task, [this, e, xs, ws, bs, y] {
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, Mem(*xs)}, {DNNL_ARG_WEIGHTS, Mem(*ws)}, {DNNL_ARG_DST, Mem(*y)}};
    if (bs) args[DNNL_ARG_BIAS] = Mem(*bs);
    CR_DNNL(Execute(e->pd, e->prim, args));
  });
  return y;
}

LinearGrads CpuBackend::LinearBackward(const LinearBackwardArgs& a) {
  const LinearDescs d{a.n, a.in, a.out, a.dtype, a.with_bias};
  auto e = Cached<BackwardEntry>(d.Key("linear_bwd"), [&] {
    auto hint = d.ForwardPd(engine_);
    auto data_pd = CR_DNNL(compat::InnerProductBackwardData(engine_, d.Src(), d.Weights(), d.Dst(), hint, Attr()));
    auto weights_pd =
        CR_DNNL(compat::InnerProductBackwardWeights(engine_, d.Src(), d.Weights(), d.Bias(), d.Dst(), hint, Attr()));
    return std::make_shared<BackwardEntry>(BackwardEntry{data_pd, CR_DNNL(dnnl::inner_product_backward_data(data_pd)),
                                                         weights_pd, CR_DNNL(dnnl::inner_product_backward_weights(weights_pd))});
  });
  CpuStoragePtr xs = InLayout(Cpu(a.x), e->weights_pd.src_desc());
  CpuStoragePtr ws = InLayout(Cpu(a.w), e->data_pd.weights_desc());
  CpuStoragePtr dys = InLayout(Cpu(a.dy), e->data_pd.diff_dst_desc());
  CpuStoragePtr dx = Alloc({a.n, a.in}, a.dtype, e->data_pd.diff_src_desc());
  CpuStoragePtr dw = Alloc({a.out, a.in}, a.dtype, e->weights_pd.diff_weights_desc());
  CpuStoragePtr db = a.with_bias ? Alloc({a.out}, a.dtype, e->weights_pd.diff_bias_desc()) : nullptr;
  Push(a.task, [this, e, xs, ws, dys, dx, dw, db] {
    CR_DNNL(Execute(e->data_pd, e->data_prim, {{DNNL_ARG_DIFF_DST, Mem(*dys)}, {DNNL_ARG_WEIGHTS, Mem(*ws)}, {DNNL_ARG_DIFF_SRC, Mem(*dx)}}));
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, Mem(*xs)}, {DNNL_ARG_DIFF_DST, Mem(*dys)}, {DNNL_ARG_DIFF_WEIGHTS, Mem(*dw)}};
    if (db) args[DNNL_ARG_DIFF_BIAS] = Mem(*db);
    CR_DNNL(Execute(e->weights_pd, e->weights_prim, args));
  });
  return {dx, dw, db};
}

}  // namespace cr::cpu
