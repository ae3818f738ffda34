// Batch normalization over [N, C, H, W] on cuDNN (spatial mode): training forward, inference
// forward, backward.
//
// The saved statistics are cuDNN's: saved1 the batch mean, saved2 the inverse standard
// deviation 1/sqrt(var + eps) (the CPU backend saves the biased variance instead; the binding
// makes them opaque for this reason). cuDNN updates the running statistics itself with
// exponentialAverageFactor = momentum, PyTorch's rule, the running variance from the unbiased
// batch variance (PyTorch's cuDNN path relies on this; the header does not spell it out, and
// the conformance test checks it against the reference on a GPU). x, y, the residual and the
// gradients are float32 NCHW or half precision NHWC (cuda_backend.h); weight, bias and the
// statistics are float32 [C] either way, as cuDNN wants for half-precision x.
//
// The tails relu(bn(x)) and relu(bn(x) + z):
// - Training, channels-last half precision, C % 4 == 0 (TriesFusedTail): cuDNN's fused batch
//   norm, cudnnBatchNormalizationForwardTrainingEx / BackwardEx with CUDNN_BATCHNORM_OPS_BN_
//   ACTIVATION or _BN_ADD_ACTIVATION in CUDNN_BATCHNORM_SPATIAL_PERSISTENT mode: one pass over
//   memory instead of three, the main cost of a batch norm. Its reserve space (the ReLU's mask,
//   in cuDNN's format) lives in saved3, a TailState that the backward checks came from a fused
//   forward of this shape; it also keeps the forward's bias, which cuDNN's fused backward reads
//   and BatchNormBackwardArgs does not carry. cuDNN 9 marks the Ex calls deprecated in favour of
//   the graph API's norm patterns; they remain, and this file is the one place to replace. Where
//   cuDNN answers NOT_SUPPORTED (a GPU or cuDNN without the kernel, bfloat16 on a version that
//   only fuses float16), the plan remembers it and the op composes instead. The workspace and
//   reserve sizes cuDNN asks for take a handle (a null one is BAD_PARAM), hence a GPU: they are
//   queried on the worker, and the reserve space is allocated there.
// - Otherwise (float32, C not a multiple of 4, or refused): composed, as the CPU backend's
//   reference path is: cuDNN's normalization, then the element-wise kernels in place on its
//   output; the backward applies the ReLU's backward (from y, the forward's output) before
//   cuDNN's.
// - Inference stays composed: cuDNN has no fused inference call, and evaluation is not where a
//   training step's time goes.
// - bfloat16 runs cuDNN's float32 batch norm on float32 NCHW copies of its operands, converted on
//   the worker before and after the call (BatchNormComputeType): PyTorch does not trust cuDNN's
//   batch norm with bfloat16 either (ATen's _select_batch_norm_backend sends bfloat16 inputs to
//   its own kernels), and neither cuDNN 9's header nor its API reference says the legacy calls or
//   the Ex ones take CUDNN_DATA_BFLOAT16. A refusal would fail every bfloat16 training step on
//   this backend, and nothing here could have seen it before a GPU run; the copies cost two or
//   three memory-bound passes a call. float16 calls cuDNN directly, fused where it can.
#include "batch_norm.h"

#include "../common/checks.h"

namespace cr::cuda {

constexpr cudnnBatchNormMode_t kFusedMode = CUDNN_BATCHNORM_SPATIAL_PERSISTENT;

std::shared_ptr<BatchNormPlan> BuildBatchNormPlan(const std::vector<int64_t>& dims, DType dtype) {
  auto p = std::make_shared<BatchNormPlan>();
  SetTensor4d(p->x, dims, dtype);
  CR_CUDNN(cudnnDeriveBNTensorDescriptor(p->stats.get(), p->x.get(), CUDNN_BATCHNORM_SPATIAL));
  CR_CUDNN(cudnnSetActivationDescriptor(p->relu.get(), CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
  return p;
}

DType BatchNormComputeType(DType dtype) { return dtype == DType::kBFloat16 ? DType::kFloat32 : dtype; }

bool TriesFusedTail(const std::vector<int64_t>& dims, DType dtype, bool relu) {
  return relu && BatchNormComputeType(dtype) == dtype && ChannelsLast(dims, dtype) && dims[1] % 4 == 0;
}

cudnnBatchNormOps_t FusedOps(bool residual) {
  return residual ? CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION : CUDNN_BATCHNORM_OPS_BN_ACTIVATION;
}

namespace {

std::shared_ptr<BatchNormPlan> GetPlan(CudaBackend& b, const std::vector<int64_t>& dims, DType dtype) {
  std::string key = "bn;" + std::to_string(int(dtype)) + ';';
  AppendInts(key, dims);
  return b.Cached<BatchNormPlan>(key, [&] { return BuildBatchNormPlan(dims, dtype); });
}

// saved3 of a training forward that tried the fused tail: opaque (no values of its own).
struct TailState : CudaStorage {
  TailState(std::shared_ptr<Device> device, std::string key, CudaStoragePtr bias)
      : CudaStorage(std::move(device), {1}, DType::kFloat32, 0), key(std::move(key)), bias(std::move(bias)) {}
  // The input's shape and type and the tail, which the backward must match.
  const std::string key;
  const CudaStoragePtr bias;
  // Worker only: set by the forward's task, read by the backward's, which runs after it.
  bool fused = false;
  std::unique_ptr<DeviceMemory> reserve;
};

std::string TailKey(const Storage& x, bool residual) {
  std::string key = std::to_string(int(x.dtype)) + (residual ? ";add-relu;" : ";relu;");
  AppendInts(key, x.dims);
  return key;
}

// cuDNN's limits. The epsilon arrives rounded through float like the CPU backend's, so both
// normalize with the same one; cuDNN refuses one below CUDNN_BN_MIN_EPSILON (0 in cuDNN 9, 1e-5
// in old releases), checked here so that it is an argument error, not a CUDNN_STATUS_BAD_PARAM
// at the next sync point.
double CheckedEps(const Storage& x, float eps) {
  RequireCudnnSize(x.dims, "input " + x.ShapeString());
  if (double(eps) < CUDNN_BN_MIN_EPSILON) {
    ThrowRangeError(OpScope::CurrentOp() + ": eps must be at least cuDNN's CUDNN_BN_MIN_EPSILON = " +
                    FormatNumber(CUDNN_BN_MIN_EPSILON) + ", got " + FormatNumber(eps) + " (input " + x.ShapeString() + ")");
  }
  return double(eps);
}

// y = relu(y + z), relu(y) or y + z in place, on the worker after cuDNN's normalization.
void ApplyTail(CudaBackend& b, CudaStorage& y, CudaStorage* z, bool relu) {
  if (z) {
    CR_CUDA(kernels::Add(y.dtype, y.Ptr(), z->Ptr(), y.Ptr(), y.Numel(), relu, b.stream()));
  } else if (relu) {
    CR_CUDA(kernels::Relu(y.dtype, y.Ptr(), y.Ptr(), y.Numel(), b.stream()));
  }
}

// A cuDNN call of the fused path: NOT_SUPPORTED is an answer (compose instead), anything else
// but success fails the op.
bool Supported(cudnnStatus_t st, const char* call) {
  if (st == CUDNN_STATUS_NOT_SUPPORTED) {
    cudaGetLastError();
    return false;
  }
  CheckCudnn(st, call, __FILE__, __LINE__);
  return true;
}

// One x-shaped operand of a legacy cuDNN call, in the type cuDNN computes in
// (BatchNormComputeType): the buffer itself, or a float32 NCHW copy made on the worker, freed in
// stream order once the call's task has run. Worker only.
class Operand {
 public:
  Operand(CudaBackend& b, CudaStorage& s) : b_(b), s_(s) {
    if (BatchNormComputeType(s.dtype) != s.dtype) {
      copy_ = std::make_shared<CudaStorage>(b.device(), s.dims, BatchNormComputeType(s.dtype));
    }
  }
  // An input's values, converted when there is a copy.
  void* In() {
    if (copy_) ConvertInto(b_, s_, *copy_);
    return Out();
  }
  // Where an output is written; Done converts it into the buffer.
  void* Out() { return copy_ ? copy_->Ptr() : s_.Ptr(); }
  void Done() {
    if (copy_) ConvertInto(b_, *copy_, s_);
  }

 private:
  CudaBackend& b_;
  CudaStorage& s_;
  std::shared_ptr<CudaStorage> copy_;
};

}  // namespace

BatchNormTrainingOutputs CudaBackend::BatchNormForwardTraining(const BatchNormForwardTrainingArgs& a) {
  const double eps = CheckedEps(*a.x, a.eps);
  const int64_t c = a.x->dims[1];
  const double momentum = a.momentum;
  const DType dtype = a.dtype;
  CudaStoragePtr x = Cuda(a.x), w = Cuda(a.weight), bias = Cuda(a.bias), rm = Cuda(a.running_mean), rv = Cuda(a.running_var);
  CudaStoragePtr z = Cuda(a.tail.residual);
  const bool relu = a.tail.relu;
  CudaStoragePtr y = Alloc(x->dims, dtype), mean = Alloc({c}), inv_std = Alloc({c});
  std::shared_ptr<TailState> state;
  if (TriesFusedTail(x->dims, dtype, relu)) state = std::make_shared<TailState>(device(), TailKey(*x, z != nullptr), bias);
  Enqueue(a.task, [this, x, w, bias, rm, rv, z, relu, momentum, eps, dtype, y, mean, inv_std, c, state] {
    auto p = GetPlan(*this, x->dims, dtype);
    // cuDNN updates both running statistics or neither; a lone one gets a scratch partner.
    std::unique_ptr<DeviceMemory> scratch;
    void* rm_ptr = rm ? rm->Ptr() : nullptr;
    void* rv_ptr = rv ? rv->Ptr() : nullptr;
    if ((rm_ptr == nullptr) != (rv_ptr == nullptr)) {
      scratch = std::make_unique<DeviceMemory>(device(), size_t(c) * sizeof(float));
      CR_CUDA(cudaMemsetAsync(scratch->get(), 0, scratch->bytes(), stream()));
      (rm_ptr ? rv_ptr : rm_ptr) = scratch->get();
    }
    if (state && !p->fused_refused) {
      const cudnnBatchNormOps_t ops = FusedOps(z != nullptr);
      const cudnnTensorDescriptor_t zd = z ? p->x.get() : nullptr;
      size_t ws_bytes = 0, reserve_bytes = 0;
      bool ok = Supported(cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(cudnn(), kFusedMode, ops, p->x.get(), zd,
                                                                                   p->x.get(), p->stats.get(), p->relu.get(),
                                                                                   &ws_bytes),
                          "cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize") &&
                Supported(cudnnGetBatchNormalizationTrainingExReserveSpaceSize(cudnn(), kFusedMode, ops, p->relu.get(),
                                                                               p->x.get(), &reserve_bytes),
                          "cudnnGetBatchNormalizationTrainingExReserveSpaceSize");
      void* ws = ok && ws_bytes ? Workspace(ws_bytes) : nullptr;
      if (ok && (!ws_bytes || ws)) {
        state->reserve = std::make_unique<DeviceMemory>(device(), reserve_bytes);
        ok = Supported(cudnnBatchNormalizationForwardTrainingEx(
                           cudnn(), kFusedMode, ops, &kOne, &kZero, p->x.get(), x->Ptr(), zd, z ? z->Ptr() : nullptr,
                           p->x.get(), y->Ptr(), p->stats.get(), w->Ptr(), bias->Ptr(), momentum, rm_ptr, rv_ptr, eps,
                           mean->Ptr(), inv_std->Ptr(), p->relu.get(), ws, ws_bytes, state->reserve->get(), reserve_bytes),
                       "cudnnBatchNormalizationForwardTrainingEx");
        state->fused = ok;
        if (ok) return;
        state->reserve.reset();
      }
      // A workspace that cannot be had composes this call only; a refusal, every later one.
      if (!ok) p->fused_refused = true;
    }
    auto q = GetPlan(*this, x->dims, BatchNormComputeType(dtype));
    Operand xc(*this, *x), yc(*this, *y);
    CR_CUDNN(cudnnBatchNormalizationForwardTraining(cudnn(), CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, q->x.get(), xc.In(),
                                                    q->x.get(), yc.Out(), q->stats.get(), w->Ptr(), bias->Ptr(), momentum,
                                                    rm_ptr, rv_ptr, eps, mean->Ptr(), inv_std->Ptr()));
    yc.Done();
    ApplyTail(*this, *y, z.get(), relu);
  });
  return {y, mean, inv_std, state};
}

StoragePtr CudaBackend::BatchNormForwardInference(const BatchNormForwardInferenceArgs& a) {
  const double eps = CheckedEps(*a.x, a.eps);
  const DType dtype = a.dtype;
  CudaStoragePtr x = Cuda(a.x), w = Cuda(a.weight), bias = Cuda(a.bias), mean = Cuda(a.mean), var = Cuda(a.var);
  CudaStoragePtr z = Cuda(a.tail.residual);
  const bool relu = a.tail.relu;
  CudaStoragePtr y = Alloc(x->dims, dtype);
  Enqueue(a.task, [this, x, w, bias, mean, var, z, relu, eps, dtype, y] {
    auto p = GetPlan(*this, x->dims, BatchNormComputeType(dtype));
    Operand xc(*this, *x), yc(*this, *y);
    CR_CUDNN(cudnnBatchNormalizationForwardInference(cudnn(), CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, p->x.get(), xc.In(),
                                                     p->x.get(), yc.Out(), p->stats.get(), w->Ptr(), bias->Ptr(),
                                                     mean->Ptr(), var->Ptr(), eps));
    yc.Done();
    ApplyTail(*this, *y, z.get(), relu);
  });
  return y;
}

// saved1 is the batch mean, saved2 the inverse standard deviation, saved3 the fused tail's state
// (or null).
BatchNormGrads CudaBackend::BatchNormBackward(const BatchNormBackwardArgs& a) {
  const double eps = CheckedEps(*a.x, a.eps);
  const int64_t c = a.x->dims[1];
  const DType dtype = a.dtype;
  std::shared_ptr<TailState> state;
  if (a.saved3) {
    state = std::dynamic_pointer_cast<TailState>(a.saved3);
    if (!state || !a.relu || state->key != TailKey(*a.x, a.with_residual)) {
      ThrowRangeError("batchNormBackward: saved3 does not come from a training forward of input " + a.x->ShapeString() + " " +
                      DTypeName(dtype) + " with this tail (residual " + (a.with_residual ? "yes" : "no") + ", relu " +
                      (a.relu ? "yes" : "no") + ")");
    }
  }
  CudaStoragePtr x = Cuda(a.x), y = Cuda(a.y), w = Cuda(a.weight), mean = Cuda(a.saved1), inv_std = Cuda(a.saved2);
  CudaStoragePtr out_grad = Cuda(a.dy);
  // The gradient at the normalization's output, which is also the residual's.
  CudaStoragePtr dy = a.relu ? Alloc(x->dims, dtype) : out_grad;
  CudaStoragePtr dx = Alloc(x->dims, dtype), dw = Alloc({c}), db = Alloc({c});
  const bool relu = a.relu, residual = a.with_residual;
  Enqueue(a.task, [this, x, y, out_grad, dy, w, mean, inv_std, eps, dtype, dx, dw, db, relu, residual, state] {
    auto p = GetPlan(*this, x->dims, dtype);
    size_t ws_bytes = 0;
    const cudnnBatchNormOps_t ops = FusedOps(residual);
    const cudnnTensorDescriptor_t dzd = residual ? p->x.get() : nullptr;
    if (state && state->fused) {
      CR_CUDNN(cudnnGetBatchNormalizationBackwardExWorkspaceSize(cudnn(), kFusedMode, ops, p->x.get(), p->x.get(), p->x.get(),
                                                                 dzd, p->x.get(), p->stats.get(), p->relu.get(), &ws_bytes));
    }
    void* ws = ws_bytes ? Workspace(ws_bytes) : nullptr;
    // Without the workspace it wants, this call composes (from y, the ReLU's mask), as the
    // forward does.
    if (state && state->fused && (!ws_bytes || ws)) {
      CR_CUDNN(cudnnBatchNormalizationBackwardEx(
          cudnn(), kFusedMode, ops, &kOne, &kZero, &kOne, &kZero, p->x.get(), x->Ptr(), p->x.get(), y->Ptr(), p->x.get(),
          out_grad->Ptr(), dzd, residual ? dy->Ptr() : nullptr, p->x.get(), dx->Ptr(), p->stats.get(), w->Ptr(),
          state->bias->Ptr(), dw->Ptr(), db->Ptr(), eps, mean->Ptr(), inv_std->Ptr(), p->relu.get(), ws, ws_bytes,
          state->reserve->get(), state->reserve->bytes()));
      return;
    }
    if (relu) CR_CUDA(kernels::ReluBackward(dtype, y->Ptr(), out_grad->Ptr(), dy->Ptr(), y->Numel(), stream()));
    auto q = GetPlan(*this, x->dims, BatchNormComputeType(dtype));
    Operand xc(*this, *x), dyc(*this, *dy), dxc(*this, *dx);
    CR_CUDNN(cudnnBatchNormalizationBackward(cudnn(), CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, &kOne, &kZero, q->x.get(),
                                             xc.In(), q->x.get(), dyc.In(), q->x.get(), dxc.Out(), q->stats.get(),
                                             w->Ptr(), dw->Ptr(), db->Ptr(), eps, mean->Ptr(), inv_std->Ptr()));
    dxc.Done();
  });
  return {dx, dw, db, residual ? dy : nullptr};
}

}  // namespace cr::cuda
