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
#include "cpu_context.h"
#include "ops.h"

namespace cr::cpu {

namespace {

using dnnl::algorithm;
using dnnl::prop_kind;
using tag = memory::format_tag;
using dt = memory::data_type;

// The 4-D layouts oneDNN's CPU primitives produce, most specific first.
constexpr tag kLayouts[] = {tag::nChw16c, tag::nChw8c, tag::nChw4c, tag::nhwc, tag::nchw};

// Which of kLayouts `md` is; plain when none, and the op then reorders to plain.
tag LayoutOf(const Desc& md) {
  for (tag t : kLayouts) {
    if (md == CR_DNNL(Desc(md.dims(), md.data_type(), t))) return t;
  }
  return tag::nchw;
}

struct PoolParams : PoolGeometry {
  algorithm alg;

  // Right padding such that oneDNN's output size equals PyTorch's floor division; it may be
  // negative (down to 1 - stride), which oneDNN accepts.
  memory::dims PadRight() const {
    memory::dims pad_r(2);
    for (int i = 0; i < 2; ++i) pad_r[i] = (y[2 + i] - 1) * stride[i] + kernel[i] - x[2 + i] - padding[i];
    return pad_r;
  }

  std::string Key(const char* op, tag layout) const {
    std::string k = op;
    k += alg == algorithm::pooling_max ? ";max;" : ";avg;";
    k += std::to_string(int(layout)) + ';';
    AppendInts(k, x);
    AppendInts(k, kernel);
    AppendInts(k, stride);
    AppendInts(k, padding);
    return k;
  }
};

// Bounds the input a backward op allocates from a shape it was given; also keeps every size
// oneDNN computes from it far from overflow.
void CheckDims(Napi::Env env, const std::vector<int64_t>& x, const PoolFailure& bad) {
  int64_t numel = 1;
  for (int64_t d : x) {
    if (d < 1) bad("input dimensions must be positive");
    if (numel > kMaxNumel / d) bad("input too large");
    numel *= d;
  }
}

PoolParams ReadParams(const Napi::CallbackInfo& info, const char* op, size_t i, algorithm alg,
                      const std::vector<int64_t>& x) {
  return PoolParams{ReadPoolGeometry(info, op, i, x, CheckDims), alg};
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
struct Workspace : CpuStorage {
  Workspace(const std::vector<int64_t>& dims, const Desc& md, std::string forward_key, tag layout)
      : CpuStorage(dims, DType::kFloat32, md), forward_key(std::move(forward_key)), layout(layout) {}
  const std::string forward_key;
  const tag layout;
};

dnnl::pooling_forward::primitive_desc ForwardPd(CpuContext& ctx, const PoolParams& p, tag layout) {
  return CR_DNNL(dnnl::pooling_forward::primitive_desc(
      dnnl::pooling_forward::desc(prop_kind::forward_training, p.alg, Desc(Dims(p.x), dt::f32, layout),
                                  Desc(Dims(p.y), dt::f32, tag::any), Dims(p.stride), Dims(p.kernel),
                                  Dims(p.padding), p.PadRight()),
      Attr(), ctx.engine));
}

// The gradient layouts are left to oneDNN, which takes them from the hint's output.
std::shared_ptr<BackwardEntry> CachedBackward(CpuContext& ctx, const PoolParams& p, tag layout) {
  return ctx.Cached<BackwardEntry>(p.Key("pool_bwd", layout), [&] {
    auto hint = ForwardPd(ctx, p, layout);
    auto pd = CR_DNNL(dnnl::pooling_backward::primitive_desc(
        dnnl::pooling_backward::desc(p.alg, Desc(Dims(p.x), dt::f32, tag::any), Desc(Dims(p.y), dt::f32, tag::any),
                                     Dims(p.stride), Dims(p.kernel), Dims(p.padding), p.PadRight()),
        Attr(), ctx.engine, hint));
    return BackwardEntry{pd, CR_DNNL(dnnl::pooling_backward(pd))};
  });
}

CpuStoragePtr Input(const Napi::CallbackInfo& info, const char* op) {
  CpuStoragePtr x = Arg(info.Env(), info[0], "input");
  CheckPoolInput(info.Env(), op, *x);
  return x;
}

// maxPool2dForward(x, kernel, stride, padding) -> [y, workspace]
Napi::Value MaxForward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "maxPool2dForward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr x = Input(info, "maxPool2dForward");
    PoolParams p = ReadParams(info, "maxPool2dForward", 1, algorithm::pooling_max, x->dims);
    const tag layout = LayoutOf(x->md);
    const std::string key = p.Key("pool_fwd", layout);
    auto e = ctx.Cached<ForwardEntry>(key, [&] {
      auto pd = ForwardPd(ctx, p, layout);
      return ForwardEntry{pd, CR_DNNL(dnnl::pooling_forward(pd))};
    });
    CpuStoragePtr xs = InLayout(ctx, x, e->pd.src_desc());
    CpuStoragePtr y = Alloc(p.y, DType::kFloat32, e->pd.dst_desc());
    CpuStoragePtr ws = std::make_shared<Workspace>(p.y, e->pd.workspace_desc(), key, layout);
    ctx.queue.Push(Describe("maxPool2dForward", {x.get()}), [&ctx, e, xs, y, ws] {
      CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_SRC, Mem(ctx, *xs)},
                                           {DNNL_ARG_DST, Mem(ctx, *y)},
                                           {DNNL_ARG_WORKSPACE, Mem(ctx, *ws)}}));
    });
    return Tuple(env, {WrapStorage(env, y), WrapStorage(env, ws)});
  });
}

// maxPool2dBackward(dy, workspace, xShape, kernel, stride, padding) -> dx
Napi::Value MaxBackward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "maxPool2dBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr dy = Arg(env, info[0], "gradient");
    auto ws = std::dynamic_pointer_cast<Workspace>(Arg(env, info[1], "workspace"));
    std::vector<int64_t> xdims = IntsArg(info, 2, "input shape", 4);
    PoolParams p = ReadParams(info, "maxPool2dBackward", 3, algorithm::pooling_max, xdims);
    CheckPoolGradient(env, "maxPool2dBackward", *dy, p.y);
    if (!ws || ws->forward_key != p.Key("pool_fwd", ws->layout)) {
      throw Napi::RangeError::New(env, "maxPool2dBackward: the workspace does not come from maxPool2dForward of input " +
                                           ShapeString(xdims) + " with this kernel, stride and padding");
    }
    auto e = CachedBackward(ctx, p, ws->layout);
    CpuStoragePtr dys = InLayout(ctx, dy, e->pd.diff_dst_desc());
    CpuStoragePtr dx = Alloc(p.x, DType::kFloat32, e->pd.diff_src_desc());
    ctx.queue.Push(Describe("maxPool2dBackward", {dy.get()}), [&ctx, e, dys, ws, dx] {
      CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_DIFF_DST, Mem(ctx, *dys)},
                                           {DNNL_ARG_WORKSPACE, Mem(ctx, *ws)},
                                           {DNNL_ARG_DIFF_SRC, Mem(ctx, *dx)}}));
    });
    return WrapStorage(env, dx);
  });
}

// avgPool2dForward(x, kernel, stride, padding) -> y
Napi::Value AvgForward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "avgPool2dForward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr x = Input(info, "avgPool2dForward");
    PoolParams p = ReadParams(info, "avgPool2dForward", 1, algorithm::pooling_avg_include_padding, x->dims);
    const tag layout = LayoutOf(x->md);
    auto e = ctx.Cached<ForwardEntry>(p.Key("pool_fwd", layout), [&] {
      auto pd = ForwardPd(ctx, p, layout);
      return ForwardEntry{pd, CR_DNNL(dnnl::pooling_forward(pd))};
    });
    CpuStoragePtr xs = InLayout(ctx, x, e->pd.src_desc());
    CpuStoragePtr y = Alloc(p.y, DType::kFloat32, e->pd.dst_desc());
    ctx.queue.Push(Describe("avgPool2dForward", {x.get()}), [&ctx, e, xs, y] {
      CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_SRC, Mem(ctx, *xs)}, {DNNL_ARG_DST, Mem(ctx, *y)}}));
    });
    return WrapStorage(env, y);
  });
}

// avgPool2dBackward(dy, xShape, kernel, stride, padding) -> dx
Napi::Value AvgBackward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "avgPool2dBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr dy = Arg(env, info[0], "gradient");
    std::vector<int64_t> xdims = IntsArg(info, 1, "input shape", 4);
    PoolParams p = ReadParams(info, "avgPool2dBackward", 2, algorithm::pooling_avg_include_padding, xdims);
    CheckPoolGradient(env, "avgPool2dBackward", *dy, p.y);
    // The gradient's layout stands for the forward's, so that it needs no reorder.
    auto e = CachedBackward(ctx, p, LayoutOf(dy->md));
    CpuStoragePtr dys = InLayout(ctx, dy, e->pd.diff_dst_desc());
    CpuStoragePtr dx = Alloc(p.x, DType::kFloat32, e->pd.diff_src_desc());
    ctx.queue.Push(Describe("avgPool2dBackward", {dy.get()}), [&ctx, e, dys, dx] {
      CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_DIFF_DST, Mem(ctx, *dys)}, {DNNL_ARG_DIFF_SRC, Mem(ctx, *dx)}}));
    });
    return WrapStorage(env, dx);
  });
}

}  // namespace

void RegisterPool2d(Napi::Env env, Napi::Object exports) {
  exports.Set("maxPool2dForward", Napi::Function::New(env, MaxForward, "maxPool2dForward"));
  exports.Set("maxPool2dBackward", Napi::Function::New(env, MaxBackward, "maxPool2dBackward"));
  exports.Set("avgPool2dForward", Napi::Function::New(env, AvgForward, "avgPool2dForward"));
  exports.Set("avgPool2dBackward", Napi::Function::New(env, AvgBackward, "avgPool2dBackward"));
}

}  // namespace cr::cpu
