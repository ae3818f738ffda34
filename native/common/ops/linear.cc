// The fully connected layer's entry points: y = x·wᵀ + b with x [N, in], w [out, in], b [out].
#include <array>

#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "registry.h"

namespace cr::ops {

namespace {

// Checks x [N, in] and w [out, in]; returns {N, in, out}.
std::array<int64_t, 3> ReadShapes(const Storage& x, const Storage& w) {
  RequireFloat(x, "input");
  RequireDType(w, x.dtype, "weight");
  if (x.dims.size() != 2 || w.dims.size() != 2 || x.dims[1] != w.dims[1]) {
    ThrowRangeError(OpScope::CurrentOp() + ": expected input [N, in] and weight [out, in], got " + x.ShapeString() + " and " +
                    w.ShapeString());
  }
  return {x.dims[0], x.dims[1], w.dims[0]};
}

}  // namespace

// linearForward(x, w, bias | null) -> y
Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  return Entry(info, "linear", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    LinearForwardArgs a;
    a.x = TensorArg(info, 0, "input");
    a.w = TensorArg(info, 1, "weight");
    a.bias = OptionalTensorArg(info, 2, "bias");
    auto [n, in, out] = ReadShapes(*a.x, *a.w);
    a.n = n, a.in = in, a.out = out;
    if (a.bias) {
      RequireDType(*a.bias, a.x->dtype, "bias");
      if (a.bias->dims != Dims{a.out}) {
        ThrowRangeError("linear: bias must have shape [" + std::to_string(a.out) + "], got " + a.bias->ShapeString());
      }
    }
    a.dtype = a.x->dtype;
    a.task = Describe("linear", {a.x.get(), a.w.get()});
    return WrapStorage(info.Env(), backend.LinearForward(a));
  });
}

// linearBackward(x, w, dy, withBias) -> [dx, dw, dbias | null]
Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  return Entry(info, "linearBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    LinearBackwardArgs a;
    a.x = TensorArg(info, 0, "input");
    a.w = TensorArg(info, 1, "weight");
    a.dy = TensorArg(info, 2, "gradient");
    a.with_bias = BoolArg(info, 3, "withBias");
    auto [n, in, out] = ReadShapes(*a.x, *a.w);
    a.n = n, a.in = in, a.out = out;
    RequireDType(*a.dy, a.x->dtype, "gradient");
    if (a.dy->dims != Dims{a.n, a.out}) {
      ThrowRangeError("linearBackward: gradient of shape " + a.dy->ShapeString() + " does not match output " +
                      ShapeString({a.n, a.out}));
    }
    a.dtype = a.x->dtype;
    a.task = Describe("linearBackward", {a.x.get(), a.w.get(), a.dy.get()});
    LinearGrads g = backend.LinearBackward(a);
    return Tuple(env, {WrapStorage(env, g.dx), WrapStorage(env, g.dw), WrapOptional(env, g.db)});
  });
}

}  // namespace cr::ops
