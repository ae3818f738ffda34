// SGD with momentum, Nesterov and weight decay over all parameters in one queued task and a
// few kernel launches (kernels/sgd.cu; the launch plan in kernels/common.cuh), for the same
// reason as on the CPU: hundreds of small parameters.
#include "cuda_backend.h"

namespace cr::cuda {

void CudaBackend::SgdStep(const SgdArgs& a) {
  std::vector<CudaStoragePtr> params, grads, bufs;
  for (size_t i = 0; i < a.params.size(); ++i) {
    params.push_back(Cuda(a.params[i]));
    grads.push_back(Cuda(a.grads[i]));
    bufs.push_back(a.bufs.empty() ? nullptr : Cuda(a.bufs[i]));
  }
  const math::SgdHyper h{a.h.lr, a.h.momentum, a.h.weight_decay, a.h.nesterov, a.h.first};
  CudaStoragePtr lr = a.lr ? Cuda(a.lr) : nullptr;
  Enqueue(a.task, [this, params = std::move(params), grads = std::move(grads), bufs = std::move(bufs), h, lr] {
    std::vector<math::SgdTensor> tensors(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      tensors[i] = {params[i]->F(), grads[i]->F(), bufs[i] ? bufs[i]->F() : nullptr, params[i]->Numel()};
    }
    CR_CUDA(kernels::SgdStep(tensors.data(), tensors.size(), h, lr ? lr->F() : nullptr, stream()));
  });
}

}  // namespace cr::cuda
