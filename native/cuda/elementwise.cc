// ReLU, its backward, scaling, addition and the fused add + ReLU of residual blocks, as CUDA
// kernels (kernels/elementwise.cu): one pass over memory each, which is all these ops cost.
#include "cuda_backend.h"

namespace cr::cuda {

StoragePtr CudaBackend::Elementwise(const ElementwiseArgs& a) {
  CudaStoragePtr x = Cuda(a.a), other = Cuda(a.b), y = Alloc(a.a->dims, a.dtype);
  const ElementwiseOp op = a.op;
  const float alpha = a.alpha;
  Enqueue(a.task, [this, op, alpha, x, other, y] {
    const int64_t n = x->Numel();
    switch (op) {
      case ElementwiseOp::kRelu:
        CR_CUDA(kernels::Relu(x->F(), y->F(), n, stream()));
        return;
      case ElementwiseOp::kScale:
        CR_CUDA(kernels::Scale(x->F(), alpha, y->F(), n, stream()));
        return;
      case ElementwiseOp::kReluBackward:
        CR_CUDA(kernels::ReluBackward(x->F(), other->F(), y->F(), n, stream()));
        return;
      case ElementwiseOp::kAdd:
      case ElementwiseOp::kAddRelu:
        CR_CUDA(kernels::Add(x->F(), other->F(), y->F(), n, op == ElementwiseOp::kAddRelu, stream()));
        return;
    }
    Fail("ERR_NATIVE", "unknown element-wise op");
  });
  return y;
}

}  // namespace cr::cuda
