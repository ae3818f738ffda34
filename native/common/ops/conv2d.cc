// conv2d's entry points: forward (with or without bias), backward data, backward weights.
#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "geometry.h"
#include "registry.h"

namespace cr::ops {

// Every dim is bounded here, before a library computes byte counts from it: the backward ops take
// the input or weight shape as an argument, and a huge padding makes a huge output (an overflowed
// count allocates a small buffer that the convolution writes past).
Conv2dGeometry ReadConv2dGeometry(const Napi::CallbackInfo& info, size_t i, const Dims& x, const Dims& w) {
  Conv2dGeometry g;
  g.x = x;
  g.w = w;
  g.stride = IntsArg(info, i, "stride", 2);
  g.padding = IntsArg(info, i + 1, "padding", 2);
  g.dilation = IntsArg(info, i + 2, "dilation", 2);
  g.groups = IntArg(info, i + 3, "groups");
  auto bad = [&](const std::string& why) {
    ThrowRangeError("conv2d: " + why + " (input " + ShapeString(x) + ", weight " + ShapeString(w) + ")");
  };
  if (x.size() != 4 || w.size() != 4) bad("expected 4-D input and weight");
  for (int64_t d : x) {
    if (d < 1) bad("input dimensions must be positive");
  }
  for (int64_t d : w) {
    if (d < 1) bad("weight dimensions must be positive");
  }
  for (int k = 0; k < 2; ++k) {
    if (g.stride[k] < 1 || g.dilation[k] < 1 || g.padding[k] < 0) bad("stride and dilation must be >= 1, padding >= 0");
  }
  if (g.groups < 1 || x[1] % g.groups != 0 || w[0] % g.groups != 0 || w[1] * g.groups != x[1]) {
    bad("channels do not match groups = " + std::to_string(g.groups));
  }
  g.y = {x[0], w[0], 0, 0};
  for (int k = 0; k < 2; ++k) {
    const int64_t k_eff = (w[2 + k] - 1) * g.dilation[k] + 1;
    // PyTorch's floor division: C++ truncates toward zero, which would give 1 instead of <= 0 for
    // a kernel up to `stride` larger than the padded input.
    const int64_t span = x[2 + k] + 2 * g.padding[k] - k_eff;
    g.y[2 + k] = span < 0 ? 0 : span / g.stride[k] + 1;
  }
  if (g.y[2] < 1 || g.y[3] < 1) bad("the kernel does not fit the padded input");
  CheckedNumel(x);
  CheckedNumel(w);
  CheckedNumel(g.y);
  return g;
}

namespace {

void RequireOutputGradient(const char* op, const Storage& dy, const Dims& y) {
  RequireFloat(dy, "gradient");
  if (dy.dims != y) {
    ThrowRangeError(std::string(op) + ": gradient of shape " + dy.ShapeString() + " does not match output " + ShapeString(y));
  }
}

}  // namespace

// conv2dForward(x, w, bias | null, stride, padding, dilation, groups) -> y
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  return Entry(info, "conv2d", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    Conv2dForwardArgs a;
    a.x = TensorArg(info, 0, "input");
    a.w = TensorArg(info, 1, "weight");
    a.bias = OptionalTensorArg(info, 2, "bias");
    RequireFloat(*a.x, "input");
    RequireDType(*a.w, a.x->dtype, "weight");
    a.g = ReadConv2dGeometry(info, 3, a.x->dims, a.w->dims);
    if (a.bias) {
      RequireDType(*a.bias, a.x->dtype, "bias");
      if (a.bias->dims != Dims{a.g.w[0]}) {
        ThrowRangeError("conv2d: bias must have shape [" + std::to_string(a.g.w[0]) + "], got " + a.bias->ShapeString());
      }
    }
    a.dtype = a.x->dtype;
    a.task = Describe("conv2d", {a.x.get(), a.w.get()});
    return WrapStorage(info.Env(), backend.Conv2dForward(a));
  });
}

// conv2dBackwardData(dy, w, xShape, stride, padding, dilation, groups) -> dx
Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& info) {
  return Entry(info, "conv2dBackwardData", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    Conv2dBackwardDataArgs a;
    a.dy = TensorArg(info, 0, "gradient");
    a.w = TensorArg(info, 1, "weight");
    RequireFloat(*a.w, "weight");
    a.g = ReadConv2dGeometry(info, 3, IntsArg(info, 2, "input shape", 4), a.w->dims);
    RequireOutputGradient("conv2dBackwardData", *a.dy, a.g.y);
    a.dtype = a.w->dtype;
    a.task = Describe("conv2dBackwardData", {a.dy.get(), a.w.get()});
    return WrapStorage(info.Env(), backend.Conv2dBackwardData(a));
  });
}

// conv2dBackwardWeights(x, dy, wShape, withBias, stride, padding, dilation, groups) -> [dw, db | null]
Napi::Value Conv2dBackwardWeights(const Napi::CallbackInfo& info) {
  return Entry(info, "conv2dBackwardWeights", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    Conv2dBackwardWeightsArgs a;
    a.x = TensorArg(info, 0, "input");
    a.dy = TensorArg(info, 1, "gradient");
    RequireFloat(*a.x, "input");
    const Dims wdims = IntsArg(info, 2, "weight shape", 4);
    a.with_bias = BoolArg(info, 3, "withBias");
    a.g = ReadConv2dGeometry(info, 4, a.x->dims, wdims);
    RequireOutputGradient("conv2dBackwardWeights", *a.dy, a.g.y);
    a.dtype = a.x->dtype;
    a.task = Describe("conv2dBackwardWeights", {a.x.get(), a.dy.get()});
    Conv2dWeightGrads grads = backend.Conv2dBackwardWeights(a);
    return Tuple(env, {WrapStorage(env, grads.dw), WrapOptional(env, grads.db)});
  });
}

}  // namespace cr::ops
