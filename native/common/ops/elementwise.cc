// The element-wise entry points: relu, its backward, scale, add, and the fused add + ReLU of
// residual blocks. One backend method takes them all (ElementwiseArgs::op).
#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "registry.h"

namespace cr::ops {

namespace {

Napi::Value Unary(const Napi::CallbackInfo& info, const char* op, ElementwiseOp kind) {
  return Entry(info, op, [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    ElementwiseArgs a;
    a.op = kind;
    a.a = TensorArg(info, 0, "input");
    RequireFloat(*a.a, "input");
    if (kind == ElementwiseOp::kScale) a.alpha = float(NumberArg(info, 1, "alpha"));
    a.dtype = a.a->dtype;
    a.task = Describe(op, {a.a.get()});
    return WrapStorage(info.Env(), backend.Elementwise(a));
  });
}

Napi::Value Binary(const Napi::CallbackInfo& info, const char* op, ElementwiseOp kind, const char* first,
                   const char* second) {
  return Entry(info, op, [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    ElementwiseArgs a;
    a.op = kind;
    a.a = TensorArg(info, 0, first);
    a.b = TensorArg(info, 1, second);
    RequireFloat(*a.a, first);
    RequireDType(*a.b, a.a->dtype, second);
    RequireSameShape(*a.a, *a.b);
    a.dtype = a.a->dtype;
    a.task = Describe(op, {a.a.get(), a.b.get()});
    return WrapStorage(info.Env(), backend.Elementwise(a));
  });
}

}  // namespace

// relu(x) -> y
Napi::Value Relu(const Napi::CallbackInfo& info) { return Unary(info, "relu", ElementwiseOp::kRelu); }

// scale(x, alpha) -> alpha · x
Napi::Value Scale(const Napi::CallbackInfo& info) { return Unary(info, "scale", ElementwiseOp::kScale); }

// reluBackward(y, dy) -> dx. Reading the forward's output rather than its input lets the caller
// drop the input as soon as the forward ran.
Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  return Binary(info, "reluBackward", ElementwiseOp::kReluBackward, "output", "gradient");
}

// add(a, b) -> a + b
Napi::Value Add(const Napi::CallbackInfo& info) {
  return Binary(info, "add", ElementwiseOp::kAdd, "first operand", "second operand");
}

// addRelu(a, b) -> relu(a + b), in one pass over memory
Napi::Value AddRelu(const Napi::CallbackInfo& info) {
  return Binary(info, "addRelu", ElementwiseOp::kAddRelu, "first operand", "second operand");
}

}  // namespace cr::ops
