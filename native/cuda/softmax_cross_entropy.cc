// Mean softmax cross-entropy with label smoothing (PyTorch's CrossEntropyLoss semantics) as
// CUDA kernels (kernels/softmax_cross_entropy.cu). A label outside [0, K) cannot be seen without
// waiting for the GPU, so the kernel records it and the next sync point rejects with it
// (ERR_LABEL_OUT_OF_RANGE, naming this op), as the CPU backend does.
#include "cuda_backend.h"

namespace cr::cuda {

SoftmaxCrossEntropyOutputs CudaBackend::SoftmaxCrossEntropyForward(const SoftmaxCrossEntropyForwardArgs& a) {
  CudaStoragePtr logits = Cuda(a.logits), labels = Cuda(a.labels), loss = Alloc({}), probs = Alloc(a.logits->dims);
  Enqueue(a.task, [this, logits, labels, loss, probs, n = a.n, k = a.k, eps = a.smoothing] {
    CR_CUDA(kernels::SoftmaxXentForward(logits->F(), labels->I(), n, k, eps, probs->F(), loss->F(), label_error(), stream()));
  });
  return {loss, probs};
}

StoragePtr CudaBackend::SoftmaxCrossEntropyBackward(const SoftmaxCrossEntropyBackwardArgs& a) {
  CudaStoragePtr probs = Cuda(a.probs), labels = Cuda(a.labels), dloss = Cuda(a.dloss), dx = Alloc(a.probs->dims);
  Enqueue(a.task, [this, probs, labels, dloss, dx, n = a.n, k = a.k, eps = a.smoothing] {
    CR_CUDA(kernels::SoftmaxXentBackward(probs->F(), labels->I(), n, k, eps, dloss->F(), dx->F(), label_error(), stream()));
  });
  return dx;
}

}  // namespace cr::cuda
