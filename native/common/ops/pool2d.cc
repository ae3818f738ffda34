// 2-D max and average pooling's entry points, forward and backward, in PyTorch's floor-mode
// geometry.
#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "geometry.h"
#include "registry.h"

namespace cr::ops {

// The input dims come from an argument in a backward op: they are bounded before anything is
// allocated from them.
PoolGeometry ReadPoolGeometry(const Napi::CallbackInfo& info, size_t i, const Dims& x) {
  PoolGeometry g;
  g.x = x;
  g.kernel = IntsArg(info, i, "kernel", 2);
  g.stride = IntsArg(info, i + 1, "stride", 2);
  g.padding = IntsArg(info, i + 2, "padding", 2);
  if (x.size() != 4) RefusePool(g, "expected a 4-D input");
  int64_t numel = 1;
  for (int64_t d : x) {
    if (d < 1) RefusePool(g, "input dimensions must be positive");
    if (numel > kMaxNumel / d) RefusePool(g, "input too large");
    numel *= d;
  }
  for (int k = 0; k < 2; ++k) {
    if (g.kernel[k] < 1 || g.stride[k] < 1) RefusePool(g, "kernel and stride must be >= 1");
    if (g.padding[k] < 0 || g.padding[k] > g.kernel[k] / 2) RefusePool(g, "padding must be between 0 and half the kernel");
  }
  g.y = {x[0], x[1], 0, 0};
  // Floor division as in PyTorch: a negative span (kernel larger than the padded input) is no
  // output, where C++'s truncation toward zero would give 1.
  for (int k = 0; k < 2; ++k) {
    const int64_t span = x[2 + k] + 2 * g.padding[k] - g.kernel[k];
    g.y[2 + k] = span < 0 ? 0 : span / g.stride[k] + 1;
  }
  if (g.y[2] < 1 || g.y[3] < 1) RefusePool(g, "the kernel does not fit the padded input");
  return g;
}

namespace {

void RequireFloatPool(const Storage& s, const char* what) {
  if (s.dtype != DType::kFloat32) {
    ThrowRangeError(OpScope::CurrentOp() + ": expected a float32 " + what + ", got " + DTypeName(s.dtype));
  }
}

Napi::Value Forward(const Napi::CallbackInfo& info, const char* op, PoolMode mode) {
  return Entry(info, op, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    Pool2dForwardArgs a;
    a.mode = mode;
    a.x = TensorArg(info, 0, "input");
    RequireFloatPool(*a.x, "input");
    a.g = ReadPoolGeometry(info, 1, a.x->dims);
    a.dtype = a.x->dtype;
    a.task = Describe(op, {a.x.get()});
    Pool2dOutputs out = backend.Pool2dForward(a);
    if (mode == PoolMode::kAvg) return WrapStorage(env, out.y);
    return Tuple(env, {WrapStorage(env, out.y), WrapStorage(env, out.workspace)});
  });
}

// Reads the output gradient at argument 0 and the geometry, the input shape at argument
// `shape_at` and the kernel after it.
Pool2dBackwardArgs ReadBackward(const Napi::CallbackInfo& info, const char* op, PoolMode mode, size_t shape_at) {
  Pool2dBackwardArgs a;
  a.mode = mode;
  a.dy = TensorArg(info, 0, "gradient");
  if (mode == PoolMode::kMax) a.workspace = TensorArg(info, 1, "workspace");
  a.g = ReadPoolGeometry(info, shape_at + 1, IntsArg(info, shape_at, "input shape", 4));
  if (a.dy->dims != a.g.y) {
    ThrowRangeError(std::string(op) + ": gradient of shape " + a.dy->ShapeString() + " does not match the output " +
                    ShapeString(a.g.y));
  }
  RequireFloatPool(*a.dy, "gradient");
  a.dtype = a.dy->dtype;
  a.task = Describe(op, {a.dy.get()});
  return a;
}

}  // namespace

// maxPool2dForward(x, kernel, stride, padding) -> [y, workspace]
Napi::Value MaxPool2dForward(const Napi::CallbackInfo& info) { return Forward(info, "maxPool2dForward", PoolMode::kMax); }

// avgPool2dForward(x, kernel, stride, padding) -> y
Napi::Value AvgPool2dForward(const Napi::CallbackInfo& info) { return Forward(info, "avgPool2dForward", PoolMode::kAvg); }

// maxPool2dBackward(dy, workspace, xShape, kernel, stride, padding) -> dx
Napi::Value MaxPool2dBackward(const Napi::CallbackInfo& info) {
  return Entry(info, "maxPool2dBackward", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    return WrapStorage(info.Env(), backend.Pool2dBackward(ReadBackward(info, "maxPool2dBackward", PoolMode::kMax, 2)));
  });
}

// avgPool2dBackward(dy, xShape, kernel, stride, padding) -> dx
Napi::Value AvgPool2dBackward(const Napi::CallbackInfo& info) {
  return Entry(info, "avgPool2dBackward", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    return WrapStorage(info.Env(), backend.Pool2dBackward(ReadBackward(info, "avgPool2dBackward", PoolMode::kAvg, 1)));
  });
}

}  // namespace cr::ops

namespace cr {

void RefusePool(const PoolGeometry& g, const std::string& why) {
  ThrowRangeError(OpScope::CurrentOp() + ": " + why + " (input " + ShapeString(g.x) + ", kernel " + ShapeString(g.kernel) +
                  ", stride " + ShapeString(g.stride) + ", padding " + ShapeString(g.padding) + ")");
}

void RefuseWorkspace(const PoolGeometry& g) {
  ThrowRangeError("maxPool2dBackward: the workspace does not come from maxPool2dForward of input " + ShapeString(g.x) +
                  " with this kernel, stride and padding");
}

}  // namespace cr
