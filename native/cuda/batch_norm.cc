// Batch normalization over [N, C, H, W] on cuDNN (spatial mode): training forward, inference
// forward, backward.
//
// The saved statistics are cuDNN's: saved1 the batch mean, saved2 the inverse standard
// deviation 1/sqrt(var + eps) (the CPU backend saves the biased variance instead; the binding
// makes them opaque for this reason). cuDNN updates the running statistics itself with
// exponentialAverageFactor = momentum, PyTorch's rule, the running variance from the unbiased
// batch variance (PyTorch's cuDNN path relies on this; the header does not spell it out, and
// the conformance test checks it against the reference on a GPU).
#include "batch_norm.h"

#include "../common/checks.h"

namespace cr::cuda {

std::shared_ptr<BatchNormPlan> BuildBatchNormPlan(const std::vector<int64_t>& dims, DType dtype) {
  auto p = std::make_shared<BatchNormPlan>();
  SetTensor4d(p->x, dims, dtype);
  CR_CUDNN(cudnnDeriveBNTensorDescriptor(p->stats.get(), p->x.get(), CUDNN_BATCHNORM_SPATIAL));
  return p;
}

namespace {

std::shared_ptr<BatchNormPlan> GetPlan(CudaBackend& b, const std::vector<int64_t>& dims, DType dtype) {
  std::string key = "bn;" + std::to_string(int(dtype)) + ';';
  AppendInts(key, dims);
  return b.Cached<BatchNormPlan>(key, [&] { return BuildBatchNormPlan(dims, dtype); });
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

}  // namespace

BatchNormTrainingOutputs CudaBackend::BatchNormForwardTraining(const BatchNormForwardTrainingArgs& a) {
  const double eps = CheckedEps(*a.x, a.eps);
  const int64_t c = a.x->dims[1];
  const double momentum = a.momentum;
  const DType dtype = a.dtype;
  CudaStoragePtr x = Cuda(a.x), w = Cuda(a.weight), bias = Cuda(a.bias), rm = Cuda(a.running_mean), rv = Cuda(a.running_var);
  CudaStoragePtr y = Alloc(x->dims, dtype), mean = Alloc({c}), inv_std = Alloc({c});
  Enqueue(a.task, [this, x, w, bias, rm, rv, momentum, eps, dtype, y, mean, inv_std, c] {
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
    CR_CUDNN(cudnnBatchNormalizationForwardTraining(cudnn(), CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, p->x.get(), x->Ptr(),
                                                    p->x.get(), y->Ptr(), p->stats.get(), w->Ptr(), bias->Ptr(), momentum,
                                                    rm_ptr, rv_ptr, eps, mean->Ptr(), inv_std->Ptr()));
  });
  return {y, mean, inv_std};
}

StoragePtr CudaBackend::BatchNormForwardInference(const BatchNormForwardInferenceArgs& a) {
  const double eps = CheckedEps(*a.x, a.eps);
  const DType dtype = a.dtype;
  CudaStoragePtr x = Cuda(a.x), w = Cuda(a.weight), bias = Cuda(a.bias), mean = Cuda(a.mean), var = Cuda(a.var);
  CudaStoragePtr y = Alloc(x->dims, dtype);
  Enqueue(a.task, [this, x, w, bias, mean, var, eps, dtype, y] {
    auto p = GetPlan(*this, x->dims, dtype);
    CR_CUDNN(cudnnBatchNormalizationForwardInference(cudnn(), CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, p->x.get(), x->Ptr(),
                                                     p->x.get(), y->Ptr(), p->stats.get(), w->Ptr(), bias->Ptr(),
                                                     mean->Ptr(), var->Ptr(), eps));
  });
  return y;
}

// saved1 is the batch mean, saved2 the inverse standard deviation.
BatchNormGrads CudaBackend::BatchNormBackward(const BatchNormBackwardArgs& a) {
  const double eps = CheckedEps(*a.x, a.eps);
  const int64_t c = a.x->dims[1];
  const DType dtype = a.dtype;
  CudaStoragePtr x = Cuda(a.x), dy = Cuda(a.dy), w = Cuda(a.weight), mean = Cuda(a.saved1), inv_std = Cuda(a.saved2);
  CudaStoragePtr dx = Alloc(x->dims, dtype), dw = Alloc({c}), db = Alloc({c});
  Enqueue(a.task, [this, x, dy, w, mean, inv_std, eps, dtype, dx, dw, db] {
    auto p = GetPlan(*this, x->dims, dtype);
    CR_CUDNN(cudnnBatchNormalizationBackward(cudnn(), CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, &kOne, &kZero, p->x.get(),
                                             x->Ptr(), p->x.get(), dy->Ptr(), p->x.get(), dx->Ptr(), p->stats.get(),
                                             w->Ptr(), dw->Ptr(), db->Ptr(), eps, mean->Ptr(), inv_std->Ptr()));
  });
  return {dx, dw, db};
}

}  // namespace cr::cuda
