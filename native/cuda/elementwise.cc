// ReLU, its backward, scaling, addition and the fused add + ReLU of residual blocks, as CUDA
// kernels (kernels/elementwise.cu): one pass over memory each, which is all these ops cost. The
// operands share one shape and type, hence one layout (cuda_backend.h): linear indexing is right
// for channels-last half precision too.
#include "cuda_backend.h"

namespace cr::cuda {

StoragePtr CudaBackend::Elementwise(const ElementwiseArgs& a) {
  CudaStoragePtr x = Cuda(a.a), other = Cuda(a.b), y = Alloc(a.a->dims, a.dtype);
  const ElementwiseOp op = a.op;
  const float alpha = a.alpha;
  Enqueue(a.task, [this, op, alpha, x, other, y] {
    const int64_t n = x->Numel();
    const DType t = x->dtype;
    switch (op) {
      case ElementwiseOp::kRelu:
        CR_CUDA(kernels::Relu(t, x->Ptr(), y->Ptr(), n, stream()));
        return;
      case ElementwiseOp::kScale:
        CR_CUDA(kernels::Scale(t, x->Ptr(), alpha, y->Ptr(), n, stream()));
        return;
      case ElementwiseOp::kReluBackward:
        CR_CUDA(kernels::ReluBackward(t, x->Ptr(), other->Ptr(), y->Ptr(), n, stream()));
        return;
      case ElementwiseOp::kAdd:
      case ElementwiseOp::kAddRelu:
        CR_CUDA(kernels::Add(t, x->Ptr(), other->Ptr(), y->Ptr(), n, op == ElementwiseOp::kAddRelu, stream()));
        return;
    }
    Fail("ERR_NATIVE", "unknown element-wise op");
  });
  return y;
}

}  // namespace cr::cuda
