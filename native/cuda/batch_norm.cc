// Batch normalization over [N, C, H, W] on cuDNN (spatial mode): training forward, inference
// forward, backward.
//
// The saved statistics are cuDNN's: saved1 the batch mean, saved2 the inverse standard
// deviation 1/sqrt(var + eps) (the CPU backend saves the biased variance instead; the binding
// makes them opaque for this reason). cuDNN updates the running statistics itself with
// exponentialAverageFactor = momentum, PyTorch's rule, the running variance from the unbiased
// batch variance (PyTorch's cuDNN path relies on this; the header does not spell it out, and
// the conformance test checks it against the reference on a GPU).
#include "cuda_context.h"
#include "ops.h"

namespace cr::cuda {

namespace {

struct Plan {
  TensorDesc x, stats;
};

std::shared_ptr<Plan> GetPlan(CudaContext& ctx, const std::vector<int64_t>& dims) {
  std::string key = "bn;";
  for (int64_t d : dims) key += std::to_string(d) + ',';
  return ctx.Plan<Plan>(key, [&] {
    auto p = std::make_shared<Plan>();
    SetTensor4d(p->x, dims);
    CR_CUDNN(cudnnDeriveBNTensorDescriptor(p->stats.get(), p->x.get(), CUDNN_BATCHNORM_SPATIAL));
    return p;
  });
}

// The shared checks, and cuDNN's limits.
class Checker : public BatchNormChecker {
 public:
  Checker(Napi::Env env, const char* op, const CudaStorage& x) : BatchNormChecker(env, op, x) {
    if (x.Numel() > INT32_MAX) Bad("tensors above 2^31 elements are not supported by cuDNN's 4-D descriptors");
  }

  // Rounded through float like the CPU backend, so both normalize with the same epsilon. cuDNN
  // refuses an epsilon below CUDNN_BN_MIN_EPSILON (0 in cuDNN 9, 1e-5 in old releases): checked
  // here so that it is an argument error, not a CUDNN_STATUS_BAD_PARAM at the next sync point.
  double Eps(double eps) const {
    const float f = BatchNormChecker::Eps(eps);
    if (double(f) < CUDNN_BN_MIN_EPSILON) {
      Bad("eps must be at least cuDNN's CUDNN_BN_MIN_EPSILON = " + FormatNumber(CUDNN_BN_MIN_EPSILON) + ", got " +
          FormatNumber(eps));
    }
    return double(f);
  }
};

// batchNormForwardTraining(x, weight, bias, runningMean | null, runningVar | null, momentum, eps)
//   -> [y, mean, inverse std]
Napi::Value ForwardTraining(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "batchNormForwardTraining", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr x = Arg(env, info[0], "input");
    CudaStoragePtr w = Arg(env, info[1], "weight");
    CudaStoragePtr b = Arg(env, info[2], "bias");
    CudaStoragePtr rm = OptionalArg(env, info[3], "running mean");
    CudaStoragePtr rv = OptionalArg(env, info[4], "running variance");
    double momentum = NumberArg(info, 5, "momentum");
    Checker check(env, "batchNormForwardTraining", *x);
    check.Vector(*w, "weight");
    check.Vector(*b, "bias");
    if (rm) check.Vector(*rm, "running mean");
    if (rv) check.Vector(*rv, "running variance");
    check.Momentum(momentum);
    const double eps = check.Eps(NumberArg(info, 6, "eps"));
    const int64_t c = check.channels();
    CudaStoragePtr y = Alloc(ctx, x->dims);
    CudaStoragePtr mean = Alloc(ctx, {c});
    CudaStoragePtr inv_std = Alloc(ctx, {c});
    Enqueue(ctx, Describe("batchNormForwardTraining", {x.get(), w.get()}),
            [&ctx, x, w, b, rm, rv, momentum, eps, y, mean, inv_std, c] {
              auto p = GetPlan(ctx, x->dims);
              // cuDNN updates both running statistics or neither; a lone one gets a scratch partner.
              std::unique_ptr<DeviceMemory> scratch;
              void* rm_ptr = rm ? rm->Ptr() : nullptr;
              void* rv_ptr = rv ? rv->Ptr() : nullptr;
              if ((rm_ptr == nullptr) != (rv_ptr == nullptr)) {
                scratch = std::make_unique<DeviceMemory>(ctx.device, size_t(c) * sizeof(float));
                CR_CUDA(cudaMemsetAsync(scratch->get(), 0, scratch->bytes(), ctx.device->stream));
                (rm_ptr ? rv_ptr : rm_ptr) = scratch->get();
              }
              CR_CUDNN(cudnnBatchNormalizationForwardTraining(
                  ctx.device->cudnn, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, p->x.get(), x->Ptr(), p->x.get(), y->Ptr(),
                  p->stats.get(), w->Ptr(), b->Ptr(), momentum, rm_ptr, rv_ptr, eps, mean->Ptr(), inv_std->Ptr()));
            });
    return Tuple(env, {WrapStorage(env, y), WrapStorage(env, mean), WrapStorage(env, inv_std)});
  });
}

// batchNormForwardInference(x, weight, bias, mean, variance, eps) -> y
Napi::Value ForwardInference(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "batchNormForwardInference", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr x = Arg(env, info[0], "input");
    CudaStoragePtr w = Arg(env, info[1], "weight");
    CudaStoragePtr b = Arg(env, info[2], "bias");
    CudaStoragePtr mean = Arg(env, info[3], "mean");
    CudaStoragePtr var = Arg(env, info[4], "variance");
    Checker check(env, "batchNormForwardInference", *x);
    check.Vector(*w, "weight");
    check.Vector(*b, "bias");
    check.Vector(*mean, "mean");
    check.Vector(*var, "variance");
    const double eps = check.Eps(NumberArg(info, 5, "eps"));
    CudaStoragePtr y = Alloc(ctx, x->dims);
    Enqueue(ctx, Describe("batchNormForwardInference", {x.get(), w.get()}), [&ctx, x, w, b, mean, var, eps, y] {
      auto p = GetPlan(ctx, x->dims);
      CR_CUDNN(cudnnBatchNormalizationForwardInference(ctx.device->cudnn, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero,
                                                       p->x.get(), x->Ptr(), p->x.get(), y->Ptr(), p->stats.get(),
                                                       w->Ptr(), b->Ptr(), mean->Ptr(), var->Ptr(), eps));
    });
    return WrapStorage(env, y);
  });
}

// batchNormBackward(x, dy, weight, mean, inverse std, eps) -> [dx, dweight, dbias]
Napi::Value Backward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "batchNormBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr x = Arg(env, info[0], "input");
    CudaStoragePtr dy = Arg(env, info[1], "gradient");
    CudaStoragePtr w = Arg(env, info[2], "weight");
    CudaStoragePtr mean = Arg(env, info[3], "saved mean");
    CudaStoragePtr inv_std = Arg(env, info[4], "saved inverse std");
    Checker check(env, "batchNormBackward", *x);
    check.Gradient(*dy);
    check.Vector(*w, "weight");
    check.Vector(*mean, "saved mean");
    check.Vector(*inv_std, "saved inverse std");
    const double eps = check.Eps(NumberArg(info, 5, "eps"));
    const int64_t c = check.channels();
    CudaStoragePtr dx = Alloc(ctx, x->dims);
    CudaStoragePtr dw = Alloc(ctx, {c});
    CudaStoragePtr db = Alloc(ctx, {c});
    Enqueue(ctx, Describe("batchNormBackward", {x.get(), dy.get()}), [&ctx, x, dy, w, mean, inv_std, eps, dx, dw, db] {
      auto p = GetPlan(ctx, x->dims);
      CR_CUDNN(cudnnBatchNormalizationBackward(ctx.device->cudnn, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, &kOne, &kZero,
                                               p->x.get(), x->Ptr(), p->x.get(), dy->Ptr(), p->x.get(), dx->Ptr(),
                                               p->stats.get(), w->Ptr(), dw->Ptr(), db->Ptr(), eps, mean->Ptr(),
                                               inv_std->Ptr()));
    });
    return Tuple(env, {WrapStorage(env, dx), WrapStorage(env, dw), WrapStorage(env, db)});
  });
}

}  // namespace

void RegisterBatchNorm(Napi::Env env, Napi::Object exports) {
  exports.Set("batchNormForwardTraining", Napi::Function::New(env, ForwardTraining, "batchNormForwardTraining"));
  exports.Set("batchNormForwardInference", Napi::Function::New(env, ForwardInference, "batchNormForwardInference"));
  exports.Set("batchNormBackward", Napi::Function::New(env, Backward, "batchNormBackward"));
}

}  // namespace cr::cuda
