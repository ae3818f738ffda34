// The cuDNN convolution calls, shared by conv2d.cc and linear.cc (a linear layer is a 1x1
// convolution of [N, in, 1, 1], which spares a dependency on cuBLAS).
#pragma once

#include "cuda_context.h"

namespace cr::cuda {

struct ConvGeometry {
  std::vector<int64_t> x, w, y;  // logical NCHW / OIHW dims
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups;
  // TF32 tensor-core math allowed; read from the context when the op is enqueued, so that
  // setTf32() applies exactly to the ops enqueued after it.
  bool tf32;
};

// Run on the worker. `bias`, `db` may be null.
void ConvForward(CudaContext& ctx, const ConvGeometry& g, CudaStorage& x, CudaStorage& w, CudaStorage* bias,
                 CudaStorage& y);
void ConvBackwardData(CudaContext& ctx, const ConvGeometry& g, CudaStorage& dy, CudaStorage& w, CudaStorage& dx);
void ConvBackwardWeights(CudaContext& ctx, const ConvGeometry& g, CudaStorage& x, CudaStorage& dy, CudaStorage& dw,
                         CudaStorage* db);

}  // namespace cr::cuda
