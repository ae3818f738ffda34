// Fully connected layer (y = x·wᵀ + b) as a cuDNN 1x1 convolution of x viewed as [N, in, 1, 1]
// with w viewed as [out, in, 1, 1]: the same memory, no reorder. The CUDA toolkit here ships no
// cuBLAS, and the layer is the small classifier head, so a GEMM library would buy little.
#include "conv2d.h"
#include "ops.h"

namespace cr::cuda {

namespace {

// Never TF32: PyTorch's float32 matrix products (torch.backends.cuda.matmul.allow_tf32) default
// to full float32, and setTf32() is documented as a switch for convolutions.
ConvGeometry AsConv(int64_t n, int64_t in, int64_t out) {
  return ConvGeometry{{n, in, 1, 1}, {out, in, 1, 1}, {n, out, 1, 1}, {1, 1}, {0, 0}, {1, 1}, 1, false};
}

// Checks x [N, in] and w [out, in].
ConvGeometry ReadParams(Napi::Env env, const CudaStoragePtr& x, const CudaStoragePtr& w) {
  RequireFloat(env, *x, "input");
  RequireFloat(env, *w, "weight");
  if (x->dims.size() != 2 || w->dims.size() != 2 || x->dims[1] != w->dims[1]) {
    throw Napi::RangeError::New(env, OpScope::CurrentOp() + ": expected input [N, in] and weight [out, in], got " +
                                         x->ShapeString() + " and " + w->ShapeString());
  }
  // cuDNN's descriptors take int dimensions and strides (input, weight and output [N, out]).
  if (x->Numel() > INT32_MAX || w->Numel() > INT32_MAX || x->dims[0] * w->dims[0] > INT32_MAX) {
    throw Napi::RangeError::New(env, OpScope::CurrentOp() + ": tensors above 2^31 elements are not supported by cuDNN's "
                                         "4-D descriptors (input " + x->ShapeString() + ", weight " + w->ShapeString() + ")");
  }
  return AsConv(x->dims[0], x->dims[1], w->dims[0]);
}

// linearForward(x, w, bias | null) -> y
Napi::Value Forward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "linear", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr x = Arg(env, info[0], "input");
    CudaStoragePtr w = Arg(env, info[1], "weight");
    CudaStoragePtr b = OptionalArg(env, info[2], "bias");
    ConvGeometry g = ReadParams(env, x, w);
    const int64_t out = w->dims[0];
    if (b) {
      RequireFloat(env, *b, "bias");
      if (b->dims != std::vector<int64_t>{out}) {
        throw Napi::RangeError::New(env, "linear: bias must have shape [" + std::to_string(out) + "], got " + b->ShapeString());
      }
    }
    CudaStoragePtr y = Alloc(ctx, {x->dims[0], out});
    Enqueue(ctx, Describe("linear", {x.get(), w.get()}), [&ctx, g, x, w, b, y] { ConvForward(ctx, g, *x, *w, b.get(), *y); });
    return WrapStorage(env, y);
  });
}

// linearBackward(x, w, dy, withBias) -> [dx, dw, dbias | null]
Napi::Value Backward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "linearBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr x = Arg(env, info[0], "input");
    CudaStoragePtr w = Arg(env, info[1], "weight");
    CudaStoragePtr dy = Arg(env, info[2], "gradient");
    bool with_bias = BoolArg(info, 3, "withBias");
    ConvGeometry g = ReadParams(env, x, w);
    RequireFloat(env, *dy, "gradient");
    const std::vector<int64_t> ydims = {x->dims[0], w->dims[0]};
    if (dy->dims != ydims) {
      throw Napi::RangeError::New(env, "linearBackward: gradient of shape " + dy->ShapeString() + " does not match output " +
                                           ShapeString(ydims));
    }
    CudaStoragePtr dx = Alloc(ctx, x->dims);
    CudaStoragePtr dw = Alloc(ctx, w->dims);
    CudaStoragePtr db = with_bias ? Alloc(ctx, {w->dims[0]}) : nullptr;
    Enqueue(ctx, Describe("linearBackward", {x.get(), w.get(), dy.get()}), [&ctx, g, x, w, dy, dx, dw, db] {
      ConvBackwardData(ctx, g, *dy, *w, *dx);
      ConvBackwardWeights(ctx, g, *x, *dy, *dw, db.get());
    });
    return Tuple(env, {WrapStorage(env, dx), WrapStorage(env, dw), db ? Napi::Value(WrapStorage(env, db)) : env.Null()});
  });
}

}  // namespace

void RegisterLinear(Napi::Env env, Napi::Object exports) {
  exports.Set("linearForward", Napi::Function::New(env, Forward, "linearForward"));
  exports.Set("linearBackward", Napi::Function::New(env, Backward, "linearBackward"));
}

}  // namespace cr::cuda
