// The cuDNN convolution calls, shared by conv2d.cc and linear.cc (a linear layer is a 1x1
// convolution of [N, in, 1, 1], which spares a dependency on cuBLAS).
#pragma once

#include "cuda_backend.h"

namespace cr::cuda {

struct ConvPlanKey {
  Conv2dGeometry g;
  DType dtype = DType::kFloat32;
  // TF32 tensor-core math allowed; read when the op is enqueued, so that setTf32() applies
  // exactly to the ops enqueued after it.
  bool tf32 = false;
};

// Run on the worker. `bias`, `db` may be null.
void ConvForward(CudaBackend& b, const ConvPlanKey& k, CudaStorage& x, CudaStorage& w, CudaStorage* bias, CudaStorage& y);
void ConvBackwardData(CudaBackend& b, const ConvPlanKey& k, CudaStorage& dy, CudaStorage& w, CudaStorage& dx);
void ConvBackwardWeights(CudaBackend& b, const ConvPlanKey& k, CudaStorage& x, CudaStorage& dy, CudaStorage& dw,
                         CudaStorage* db);

}  // namespace cr::cuda
