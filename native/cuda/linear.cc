// Fully connected layer (y = x·wᵀ + b) as a cuDNN 1x1 convolution of x viewed as [N, in, 1, 1]
// with w viewed as [out, in, 1, 1]: the same memory, no reorder. In half precision the views get
// NHWC descriptors (SetTensor4d), which with H = W = 1 is that memory too, and the tensor-core
// kernels cuDNN has for NHWC. The CUDA toolkit here ships no
// cuBLAS, and the layer is the small classifier head, so a GEMM library would buy little.
#include "conv2d.h"

namespace cr::cuda {

namespace {

// Never TF32: PyTorch's float32 matrix products (torch.backends.cuda.matmul.allow_tf32) default
// to full float32, and setTf32() is documented as a switch for convolutions.
ConvPlanKey AsConv(int64_t n, int64_t in, int64_t out, DType dtype) {
  RequireCudnnSize({n, in}, "input [" + std::to_string(n) + ", " + std::to_string(in) + "]");
  RequireCudnnSize({out, in}, "weight [" + std::to_string(out) + ", " + std::to_string(in) + "]");
  RequireCudnnSize({n, out}, "output [" + std::to_string(n) + ", " + std::to_string(out) + "]");
  return ConvPlanKey{Conv2dGeometry{{n, in, 1, 1}, {out, in, 1, 1}, {n, out, 1, 1}, {1, 1}, {0, 0}, {1, 1}, 1}, dtype, false};
}

}  // namespace

StoragePtr CudaBackend::LinearForward(const LinearForwardArgs& a) {
  const ConvPlanKey k = AsConv(a.n, a.in, a.out, a.dtype);
  CudaStoragePtr x = Cuda(a.x), w = Cuda(a.w), bias = Cuda(a.bias), y = Alloc({a.n, a.out}, a.dtype);
  Enqueue(a.task, [this, k, x, w, bias, y] { ConvForward(*this, k, *x, *w, bias.get(), *y); });
  return y;
}

LinearGrads CudaBackend::LinearBackward(const LinearBackwardArgs& a) {
  const ConvPlanKey k = AsConv(a.n, a.in, a.out, a.dtype);
  CudaStoragePtr x = Cuda(a.x), w = Cuda(a.w), dy = Cuda(a.dy);
  CudaStoragePtr dx = Alloc({a.n, a.in}, a.dtype), dw = Alloc({a.out, a.in}, a.dtype);
  CudaStoragePtr db = a.with_bias ? Alloc({a.out}, a.dtype) : nullptr;
  Enqueue(a.task, [this, k, x, w, dy, dx, dw, db] {
    ConvBackwardData(*this, k, *dy, *w, *dx);
    ConvBackwardWeights(*this, k, *x, *dy, *dw, db.get());
  });
  return {dx, dw, db};
}

}  // namespace cr::cuda
