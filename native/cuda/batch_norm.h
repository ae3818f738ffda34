// Batch-norm plans, shared by batch_norm.cc and the host-side checks (which run them without a
// GPU).
#pragma once

#include "cuda_backend.h"

namespace cr::cuda {

struct BatchNormPlan {
  // x and y (and z, dy, dx, dz): [N, C, H, W] in the layout of the dtype (NHWC for half
  // precision); stats: cuDNN's derived [1, C, 1, 1] float for weight, bias and statistics.
  TensorDesc x, stats;
  // ReLU, for cuDNN's fused tails.
  ActivationDesc relu;
  // Set on the worker once cuDNN refused the fused tail for this shape (NOT_SUPPORTED): later
  // calls compose at once.
  bool fused_refused = false;
};

// Host calls only (no GPU).
std::shared_ptr<BatchNormPlan> BuildBatchNormPlan(const std::vector<int64_t>& dims, DType dtype);

// The type cuDNN's batch norm computes a `dtype` x in: float32 for bfloat16 (batch_norm.cc says
// why), else dtype.
DType BatchNormComputeType(DType dtype);

// Whether a training forward of x (dims, dtype) with this tail tries cuDNN's fused batch norm
// (cudnnBatchNormalizationForwardTrainingEx) before composing: a ReLU tail on channels-last half
// precision with C a multiple of 4: the conditions cuDNN's API reference gives for
// CUDNN_BATCHNORM_OPS_BN_ACTIVATION and _BN_ADD_ACTIVATION (the cuDNN 9 header states none; what
// cuDNN refuses all the same composes, see batch_norm.cc).
bool TriesFusedTail(const std::vector<int64_t>& dims, DType dtype, bool relu);

// The fused ops value for a tail: CUDNN_BATCHNORM_OPS_BN_ACTIVATION or _BN_ADD_ACTIVATION.
cudnnBatchNormOps_t FusedOps(bool residual);

}  // namespace cr::cuda
