// 2-D max and average pooling on oneDNN, forward and backward (PyTorch's floor-mode geometry;
// average pooling counts padded zeros, PyTorch's count_include_pad = true).
//
// Pooling runs on the activation's own layout: oneDNN wants a concrete source layout for forward
// pooling and gives the output the same one, so an activation from a convolution stays blocked
// (nChw8c/nChw16c) and is never reordered. The backward ops see only the input's shape, yet oneDNN
// needs the forward primitive descriptor as a hint, and for max pooling that descriptor fixes the
// workspace format (per output element, the argmax offset inside its window, in the output's
// layout: u8 for windows under 256 elements, s32 beyond). The backward therefore rebuilds the
// forward descriptor on the layout the forward ran on: the workspace remembers it, and average
// pooling takes it from the gradient.
#include "cpu_backend.h"

namespace cr::cpu {

namespace {

using dnnl::algorithm;
using dnnl::prop_kind;
using tag = memory::format_tag;

// The 4-D layouts oneDNN's CPU primitives produce, most specific first.
constexpr tag kLayouts[] = {tag::nChw16c, tag::nChw8c, tag::nChw4c, tag::nhwc, tag::nchw};

// Which of kLayouts `md` is; plain when none, and the op then reorders to plain.
tag LayoutOf(const Desc& md) {
  for (tag t : kLayouts) {
    if (md == CR_DNNL(Desc(compat::DimsOf(md), compat::TypeOf(md), t))) return t;
  }
  return tag::nchw;
}

struct PoolDescs {
  const PoolGeometry& g;
  algorithm alg;
  memory::data_type type;

  // Right padding such that oneDNN's output size equals PyTorch's floor division; it may be
  // negative (down to 1 - stride), which oneDNN accepts.
  memory::dims PadRight() const {
    memory::dims pad_r(2);
    for (int i = 0; i < 2; ++i) pad_r[i] = (g.y[2 + i] - 1) * g.stride[i] + g.kernel[i] - g.x[2 + i] - g.padding[i];
    return pad_r;
  }

  std::string Key(const char* op, tag layout) const {
    std::string k = op;
    k += alg == algorithm::pooling_max ? ";max;" : ";avg;";
    k += std::to_string(int(type)) + ';' + std::to_string(int(layout)) + ';';
    AppendInts(k, g.x);
    AppendInts(k, g.kernel);
    AppendInts(k, g.stride);
    AppendInts(k, g.padding);
    return k;
  }

  dnnl::pooling_forward::primitive_desc ForwardPd(const dnnl::engine& engine, tag layout) const {
    return CR_DNNL(compat::PoolForward(engine, prop_kind::forward_training, alg, Desc(Dims(g.x), type, layout),
                                       Desc(Dims(g.y), type, tag::any), Dims(g.stride), Dims(g.kernel), Dims(g.padding),
                                       PadRight(), Attr()));
  }
};

algorithm Algorithm(PoolMode mode) {
  return mode == PoolMode::kMax ? algorithm::pooling_max : algorithm::pooling_avg_include_padding;
}

struct ForwardEntry {
  dnnl::pooling_forward::primitive_desc pd;
  dnnl::pooling_forward prim;
};

struct BackwardEntry {
  dnnl::pooling_backward::primitive_desc pd;
  dnnl::pooling_backward prim;
};

// A max-pooling workspace that remembers the forward it came from, so that the backward can
// rebuild that forward's descriptor and can refuse a workspace of another pooling, whose argmax
// offsets would send gradients outside the windows.
struct PoolWorkspace : CpuStorage {
  PoolWorkspace(const std::vector<int64_t>& dims, const Desc& md, std::string forward_key, tag layout)
      : CpuStorage(dims, DType::kFloat32, md), forward_key(std::move(forward_key)), layout(layout) {}
  const std::string forward_key;
  const tag layout;
};

}  // namespace

Pool2dOutputs CpuBackend::Pool2dForward(const Pool2dForwardArgs& a) {
  CpuStoragePtr x = Cpu(a.x);
  const PoolDescs d{a.g, Algorithm(a.mode), DnnlType(a.dtype)};
  const tag layout = LayoutOf(x->md);
  const std::string key = d.Key("pool_fwd", layout);
  auto e = Cached<ForwardEntry>(key, [&] {
    auto pd = d.ForwardPd(engine_, layout);
    return std::make_shared<ForwardEntry>(ForwardEntry{pd, CR_DNNL(dnnl::pooling_forward(pd))});
  });
  CpuStoragePtr xs = InLayout(x, e->pd.src_desc());
  CpuStoragePtr y = Alloc(a.g.y, a.dtype, e->pd.dst_desc());
  CpuStoragePtr ws = a.mode == PoolMode::kMax ? std::make_shared<PoolWorkspace>(a.g.y, e->pd.workspace_desc(), key, layout) : nullptr;
  Push(a.task, [this, e, xs, y, ws] {
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, Mem(*xs)}, {DNNL_ARG_DST, Mem(*y)}};
    if (ws) args[DNNL_ARG_WORKSPACE] = Mem(*ws);
    CR_DNNL(Execute(e->pd, e->prim, args));
  });
  return {y, ws};
}

StoragePtr CpuBackend::Pool2dBackward(const Pool2dBackwardArgs& a) {
  CpuStoragePtr dy = Cpu(a.dy);
  const PoolDescs d{a.g, Algorithm(a.mode), DnnlType(a.dtype)};
  std::shared_ptr<PoolWorkspace> ws;
  // Average pooling: the gradient's layout stands for the forward's, so that it needs no reorder.
  tag layout = LayoutOf(dy->md);
  if (a.mode == PoolMode::kMax) {
    ws = std::dynamic_pointer_cast<PoolWorkspace>(a.workspace);
    if (!ws || ws->forward_key != d.Key("pool_fwd", ws->layout)) RefuseWorkspace(a.g);
    layout = ws->layout;
  }
  // The gradient layouts are left to oneDNN, which takes them from the hint's output.
  auto e = Cached<BackwardEntry>(d.Key("pool_bwd", layout), [&] {
    auto pd = CR_DNNL(compat::PoolBackward(engine_, d.alg, Desc(Dims(a.g.x), d.type, tag::any),
                                           Desc(Dims(a.g.y), d.type, tag::any), Dims(a.g.stride), Dims(a.g.kernel),
                                           Dims(a.g.padding), d.PadRight(), d.ForwardPd(engine_, layout), Attr()));
    return std::make_shared<BackwardEntry>(BackwardEntry{pd, CR_DNNL(dnnl::pooling_backward(pd))});
  });
  CpuStoragePtr dys = InLayout(dy, e->pd.diff_dst_desc());
  CpuStoragePtr dx = Alloc(a.g.x, a.dtype, e->pd.diff_src_desc());
  Push(a.task, [this, e, dys, ws, dx] {
    std::unordered_map<int, memory> args = {{DNNL_ARG_DIFF_DST, Mem(*dys)}, {DNNL_ARG_DIFF_SRC, Mem(*dx)}};
    if (ws) args[DNNL_ARG_WORKSPACE] = Mem(*ws);
    CR_DNNL(Execute(e->pd, e->prim, args));
  });
  return dx;
}

}  // namespace cr::cpu
