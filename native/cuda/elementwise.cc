// ReLU, its backward, scaling, addition and the fused add + ReLU of residual blocks, as CUDA
// kernels (kernels/elementwise.cu): one pass over memory each, which is all these ops cost.
#include "cuda_context.h"
#include "ops.h"

namespace cr::cuda {

namespace {

// relu(x) -> y
Napi::Value Relu(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "relu", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr x = Arg(env, info[0], "input");
    RequireFloat(env, *x, "input");
    CudaStoragePtr y = Alloc(ctx, x->dims);
    Enqueue(ctx, Describe("relu", {x.get()}), [&ctx, x, y] {
      CR_CUDA(kernels::Relu(x->F(), y->F(), x->Numel(), ctx.device->stream));
    });
    return WrapStorage(env, y);
  });
}

// scale(x, alpha) -> alpha * x
Napi::Value Scale(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "scale", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr x = Arg(env, info[0], "input");
    RequireFloat(env, *x, "input");
    const float alpha = float(NumberArg(info, 1, "alpha"));
    CudaStoragePtr y = Alloc(ctx, x->dims);
    Enqueue(ctx, Describe("scale", {x.get()}), [&ctx, x, y, alpha] {
      CR_CUDA(kernels::Scale(x->F(), alpha, y->F(), x->Numel(), ctx.device->stream));
    });
    return WrapStorage(env, y);
  });
}

// reluBackward(y, dy) -> dx, from the forward output (so the caller can drop the input).
Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "reluBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr y = Arg(env, info[0], "output");
    CudaStoragePtr dy = Arg(env, info[1], "gradient");
    RequireFloat(env, *y, "output");
    RequireFloat(env, *dy, "gradient");
    RequireSameShape(env, *y, *dy);
    CudaStoragePtr dx = Alloc(ctx, y->dims);
    Enqueue(ctx, Describe("reluBackward", {y.get(), dy.get()}), [&ctx, y, dy, dx] {
      CR_CUDA(kernels::ReluBackward(y->F(), dy->F(), dx->F(), y->Numel(), ctx.device->stream));
    });
    return WrapStorage(env, dx);
  });
}

Napi::Value Add(const Napi::CallbackInfo& info, const char* op, bool relu) {
  return Guard(info, "cuda", op, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr a = Arg(env, info[0], "first operand");
    CudaStoragePtr b = Arg(env, info[1], "second operand");
    RequireFloat(env, *a, "first operand");
    RequireFloat(env, *b, "second operand");
    RequireSameShape(env, *a, *b);
    CudaStoragePtr y = Alloc(ctx, a->dims);
    Enqueue(ctx, Describe(op, {a.get(), b.get()}), [&ctx, a, b, y, relu] {
      CR_CUDA(kernels::Add(a->F(), b->F(), y->F(), a->Numel(), relu, ctx.device->stream));
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

}  // namespace cr::cuda
