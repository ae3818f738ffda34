// 2-D max and average pooling on cuDNN, forward and backward (PyTorch's floor-mode geometry).
//
// cuDNN's max-pooling backward needs the forward's input and output rather than an argmax
// workspace, so the opaque "workspace" of maxPool2dForward holds references to both: they stay
// alive until the backward ran (the price: the input is kept, where the CPU backend keeps only
// argmax offsets). The workspace also remembers the geometry, so a workspace of another
// pooling is refused.
#include "pool2d.h"

#include "ops.h"

namespace cr::cuda {

void SetPool(const PoolDesc& d, bool max, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
             const std::vector<int64_t>& padding) {
  CR_CUDNN(cudnnSetPooling2dDescriptor(d.get(), max ? CUDNN_POOLING_MAX : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
                                       CUDNN_PROPAGATE_NAN, int(kernel[0]), int(kernel[1]), int(padding[0]),
                                       int(padding[1]), int(stride[0]), int(stride[1])));
}

namespace {

struct PoolParams : PoolGeometry {
  bool max;

  std::string Key() const {
    std::string k = max ? "pool;max;" : "pool;avg;";
    for (const auto* v : {&x, &kernel, &stride, &padding}) {
      for (int64_t d : *v) k += std::to_string(d) + ',';
      k += ';';
    }
    return k;
  }
};

struct Plan {
  TensorDesc x, y;
  PoolDesc pool;
};

std::shared_ptr<Plan> GetPlan(CudaContext& ctx, const PoolParams& p) {
  return ctx.Plan<Plan>(p.Key(), [&] {
    auto plan = std::make_shared<Plan>();
    SetTensor4d(plan->x, p.x);
    SetTensor4d(plan->y, p.y);
    SetPool(plan->pool, p.max, p.kernel, p.stride, p.padding);
    return plan;
  });
}

void CheckDims(Napi::Env env, const std::vector<int64_t>& x, const PoolFailure& bad) {
  for (int64_t d : x) {
    if (d < 1) bad("input dimensions must be positive");
  }
  if (CheckedNumel(env, x) > INT32_MAX) bad("tensors above 2^31 elements are not supported by cuDNN's 4-D descriptors");
}

PoolParams ReadParams(const Napi::CallbackInfo& info, const char* op, size_t i, bool max, const std::vector<int64_t>& x) {
  return PoolParams{ReadPoolGeometry(info, op, i, x, CheckDims), max};
}

struct Workspace : CudaStorage {
  Workspace(std::shared_ptr<Device> device, const std::vector<int64_t>& dims, std::string key, CudaStoragePtr x,
            CudaStoragePtr y)
      : CudaStorage(std::move(device), dims, DType::kFloat32, 0), key(std::move(key)), x(std::move(x)), y(std::move(y)) {}
  const std::string key;
  const CudaStoragePtr x, y;
};

CudaStoragePtr Input(const Napi::CallbackInfo& info, const char* op) {
  CudaStoragePtr x = Arg(info.Env(), info[0], "input");
  CheckPoolInput(info.Env(), op, *x);
  return x;
}

Napi::Value Forward(const Napi::CallbackInfo& info, const char* op, bool max) {
  return Guard(info, "cuda", op, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr x = Input(info, op);
    PoolParams p = ReadParams(info, op, 1, max, x->dims);
    CudaStoragePtr y = Alloc(ctx, p.y);
    Enqueue(ctx, Describe(op, {x.get()}), [&ctx, p, x, y] {
      auto plan = GetPlan(ctx, p);
      CR_CUDNN(cudnnPoolingForward(ctx.device->cudnn, plan->pool.get(), &kOne, plan->x.get(), x->Ptr(), &kZero,
                                   plan->y.get(), y->Ptr()));
    });
    if (!max) return WrapStorage(env, y);
    CudaStoragePtr ws = std::make_shared<Workspace>(ctx.device, p.y, p.Key(), x, y);
    return Tuple(env, {WrapStorage(env, y), WrapStorage(env, ws)});
  });
}

// y and x are what cuDNN's backward reads for max pooling; average pooling reads neither, and
// is handed dy and dx in their place.
void EnqueueBackward(CudaContext& ctx, const char* op, const PoolParams& p, const CudaStoragePtr& dy,
                     const CudaStoragePtr& y, const CudaStoragePtr& x, const CudaStoragePtr& dx) {
  Enqueue(ctx, Describe(op, {dy.get()}), [&ctx, p, dy, y, x, dx] {
    auto plan = GetPlan(ctx, p);
    CR_CUDNN(cudnnPoolingBackward(ctx.device->cudnn, plan->pool.get(), &kOne, plan->y.get(), (y ? y : dy)->Ptr(),
                                  plan->y.get(), dy->Ptr(), plan->x.get(), (x ? x : dx)->Ptr(), &kZero, plan->x.get(),
                                  dx->Ptr()));
  });
}

// maxPool2dBackward(dy, workspace, xShape, kernel, stride, padding) -> dx
Napi::Value MaxBackward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "maxPool2dBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr dy = Arg(env, info[0], "gradient");
    auto ws = std::dynamic_pointer_cast<Workspace>(Arg(env, info[1], "workspace"));
    std::vector<int64_t> xdims = IntsArg(info, 2, "input shape", 4);
    PoolParams p = ReadParams(info, "maxPool2dBackward", 3, true, xdims);
    CheckPoolGradient(env, "maxPool2dBackward", *dy, p.y);
    if (!ws || ws->key != p.Key()) {
      throw Napi::RangeError::New(env, "maxPool2dBackward: the workspace does not come from maxPool2dForward of input " +
                                           ShapeString(xdims) + " with this kernel, stride and padding");
    }
    CudaStoragePtr dx = Alloc(ctx, p.x);
    EnqueueBackward(ctx, "maxPool2dBackward", p, dy, ws->y, ws->x, dx);
    return WrapStorage(env, dx);
  });
}

// avgPool2dBackward(dy, xShape, kernel, stride, padding) -> dx
Napi::Value AvgBackward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "avgPool2dBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr dy = Arg(env, info[0], "gradient");
    std::vector<int64_t> xdims = IntsArg(info, 1, "input shape", 4);
    PoolParams p = ReadParams(info, "avgPool2dBackward", 2, false, xdims);
    CheckPoolGradient(env, "avgPool2dBackward", *dy, p.y);
    CudaStoragePtr dx = Alloc(ctx, p.x);
    EnqueueBackward(ctx, "avgPool2dBackward", p, dy, nullptr, nullptr, dx);
    return WrapStorage(env, dx);
  });
}

}  // namespace

void RegisterPool2d(Napi::Env env, Napi::Object exports) {
  exports.Set("maxPool2dForward", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Forward(info, "maxPool2dForward", true); }, "maxPool2dForward"));
  exports.Set("maxPool2dBackward", Napi::Function::New(env, MaxBackward, "maxPool2dBackward"));
  exports.Set("avgPool2dForward", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Forward(info, "avgPool2dForward", false); }, "avgPool2dForward"));
  exports.Set("avgPool2dBackward", Napi::Function::New(env, AvgBackward, "avgPool2dBackward"));
}

}  // namespace cr::cuda
