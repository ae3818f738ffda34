// ReLU, its backward, addition and the fused add + ReLU of residual blocks, on oneDNN.
//
// These ops run on whatever layout their first input has (a convolution's blocked nChw16c,
// or plain), and their output keeps it: converting a blocked activation to plain and back
// would cost more than the op itself.
#include "cpu_context.h"
#include "ops.h"

namespace cr::cpu {

namespace {

using dnnl::algorithm;
using dnnl::prop_kind;

struct UnaryEntry {
  dnnl::eltwise_forward::primitive_desc pd;
  dnnl::eltwise_forward prim;
};

struct ReluBackwardEntry {
  dnnl::eltwise_backward::primitive_desc pd;
  dnnl::eltwise_backward prim;
};

struct BinaryEntry {
  dnnl::binary::primitive_desc pd;
  dnnl::binary prim;
};

// y = f(x) for one of oneDNN's elementwise algorithms; the output keeps x's layout.
Napi::Value Unary(const Napi::CallbackInfo& info, const char* op, algorithm alg, float alpha) {
  return Guard(info, "cpu", op, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr x = Arg(env, info[0], "input");
    RequireFloat(env, *x, "input");
    std::string key = std::string(op) + ";" + std::to_string(alpha) + ";";
    AppendDesc(key, x->md);
    auto e = ctx.Cached<UnaryEntry>(key, [&] {
      auto d = CR_DNNL(dnnl::eltwise_forward::desc(prop_kind::forward_training, alg, x->md, alpha, 0.f));
      auto pd = CR_DNNL(dnnl::eltwise_forward::primitive_desc(d, Attr(), ctx.engine));
      return UnaryEntry{pd, CR_DNNL(dnnl::eltwise_forward(pd))};
    });
    CpuStoragePtr y = Alloc(x->dims, DType::kFloat32, e->pd.dst_desc());
    ctx.queue.Push(Describe(op, {x.get()}), [&ctx, e, x, y] {
      CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_SRC, Mem(ctx, *x)}, {DNNL_ARG_DST, Mem(ctx, *y)}}));
    });
    return WrapStorage(env, y);
  });
}

// relu(x) -> y
Napi::Value Relu(const Napi::CallbackInfo& info) { return Unary(info, "relu", algorithm::eltwise_relu, 0.f); }

// scale(x, alpha) -> alpha * x
Napi::Value Scale(const Napi::CallbackInfo& info) {
  return Unary(info, "scale", algorithm::eltwise_linear, float(NumberArg(info, 1, "alpha")));
}

// reluBackward(y, dy) -> dx. Reading the forward output rather than its input lets the
// caller drop the input as soon as the forward ran.
Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "reluBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr y = Arg(env, info[0], "output");
    CpuStoragePtr dy = Arg(env, info[1], "gradient");
    RequireFloat(env, *y, "output");
    RequireFloat(env, *dy, "gradient");
    RequireSameShape(env, *y, *dy);
    std::string key = "relu_bwd;";
    AppendDesc(key, y->md);
    auto e = ctx.Cached<ReluBackwardEntry>(key, [&] {
      auto fd = CR_DNNL(
          dnnl::eltwise_forward::desc(prop_kind::forward_training, algorithm::eltwise_relu_use_dst_for_bwd, y->md, 0.f, 0.f));
      auto hint = CR_DNNL(dnnl::eltwise_forward::primitive_desc(fd, Attr(), ctx.engine));
      auto d = CR_DNNL(dnnl::eltwise_backward::desc(algorithm::eltwise_relu_use_dst_for_bwd, y->md, y->md, 0.f, 0.f));
      auto pd = CR_DNNL(dnnl::eltwise_backward::primitive_desc(d, Attr(), ctx.engine, hint));
      return ReluBackwardEntry{pd, CR_DNNL(dnnl::eltwise_backward(pd))};
    });
    CpuStoragePtr dys = InLayout(ctx, dy, e->pd.diff_dst_desc());
    CpuStoragePtr dx = Alloc(y->dims, DType::kFloat32, e->pd.diff_src_desc());
    ctx.queue.Push(Describe("reluBackward", {y.get(), dy.get()}), [&ctx, e, y, dys, dx] {
      CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_DST, Mem(ctx, *y)},
                                           {DNNL_ARG_DIFF_DST, Mem(ctx, *dys)},
                                           {DNNL_ARG_DIFF_SRC, Mem(ctx, *dx)}}));
    });
    return WrapStorage(env, dx);
  });
}

// a + b, followed by a ReLU post-op when `relu`: the fused form reads and writes the
// activation once instead of twice.
Napi::Value Add(const Napi::CallbackInfo& info, const char* op, bool relu) {
  return Guard(info, "cpu", op, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr a = Arg(env, info[0], "first operand");
    CpuStoragePtr b = Arg(env, info[1], "second operand");
    RequireFloat(env, *a, "first operand");
    RequireFloat(env, *b, "second operand");
    RequireSameShape(env, *a, *b);
    std::string key = relu ? "add_relu;" : "add;";
    AppendDesc(key, a->md);
    auto e = ctx.Cached<BinaryEntry>(key, [&] {
      auto d = CR_DNNL(dnnl::binary::desc(algorithm::binary_add, a->md, a->md, a->md));
      dnnl::primitive_attr attr = Attr();
      if (relu) {
        dnnl::post_ops ops;
        CR_DNNL(ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f));
        CR_DNNL(attr.set_post_ops(ops));
      }
      auto pd = CR_DNNL(dnnl::binary::primitive_desc(d, attr, ctx.engine));
      return BinaryEntry{pd, CR_DNNL(dnnl::binary(pd))};
    });
    CpuStoragePtr bs = InLayout(ctx, b, e->pd.src1_desc());
    CpuStoragePtr y = Alloc(a->dims, DType::kFloat32, e->pd.dst_desc());
    ctx.queue.Push(Describe(op, {a.get(), b.get()}), [&ctx, e, a, bs, y] {
      CR_DNNL(Execute(ctx, e->prim, {{DNNL_ARG_SRC_0, Mem(ctx, *a)},
                                           {DNNL_ARG_SRC_1, Mem(ctx, *bs)},
                                           {DNNL_ARG_DST, Mem(ctx, *y)}}));
    });
    return WrapStorage(env, y);
  });
}

}  // namespace

void RegisterElementwise(Napi::Env env, Napi::Object exports) {
  exports.Set("relu", Napi::Function::New(env, Relu, "relu"));
  exports.Set("reluBackward", Napi::Function::New(env, ReluBackward, "reluBackward"));
  exports.Set("scale", Napi::Function::New(env, Scale, "scale"));
  exports.Set("add", Napi::Function::New(env, [](const Napi::CallbackInfo& info) { return Add(info, "add", false); }, "add"));
  exports.Set("addRelu", Napi::Function::New(env, [](const Napi::CallbackInfo& info) { return Add(info, "addRelu", true); }, "addRelu"));
}

}  // namespace cr::cpu
