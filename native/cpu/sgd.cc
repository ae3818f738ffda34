// SGD with momentum, Nesterov and weight decay over all parameters in one queued task: a
// ResNet has hundreds of small parameters (batch-norm vectors), and one task per parameter
// would cost more in queueing than in arithmetic.
#include "cpu_backend.h"

namespace cr::cpu {

namespace {

struct Slot {
  CpuStoragePtr param, grad, buf;
};

}  // namespace

void CpuBackend::SgdStep(const SgdArgs& a) {
  std::vector<Slot> slots;
  slots.reserve(a.params.size());
  // Momentum buffers in another layout are updated in a copy that is written back after the
  // step, since the update is in place.
  std::vector<std::pair<CpuStoragePtr, CpuStoragePtr>> write_back;
  for (size_t i = 0; i < a.params.size(); ++i) {
    CpuStoragePtr param = Cpu(a.params[i]);
    Slot s{param, InLayout(Cpu(a.grads[i]), param->md), nullptr};
    if (!a.bufs.empty()) {
      CpuStoragePtr buf = Cpu(a.bufs[i]);
      s.buf = InLayout(buf, param->md);
      if (s.buf != buf) write_back.emplace_back(s.buf, buf);
    }
    slots.push_back(std::move(s));
  }
  Push(a.task, [slots = std::move(slots), h = a.h, lr_buffer = a.lr ? Cpu(a.lr) : nullptr] {
    const float lr = lr_buffer ? *static_cast<const float*>(lr_buffer->data) : h.lr;
    for (const Slot& s : slots) {
      float* p = static_cast<float*>(s.param->data);
      const float* g = static_cast<const float*>(s.grad->data);
      float* b = s.buf ? static_cast<float*>(s.buf->data) : nullptr;
      // Blocked layouts pad; all three share the layout, so the padding is updated alike and
      // never read.
      const int64_t n = int64_t(s.param->md.get_size() / sizeof(float));
#pragma omp parallel for if (size_t(n) * 3 * sizeof(float) >= kSmallWorkBytes)
      for (int64_t i = 0; i < n; ++i) {
        float d = h.weight_decay != 0 ? g[i] + h.weight_decay * p[i] : g[i];
        if (b) {
          const float v = h.first ? d : h.momentum * b[i] + d;
          b[i] = v;
          d = h.nesterov ? d + h.momentum * v : v;
        }
        p[i] -= lr * d;
      }
    }
  });
  for (const auto& [copy, buf] : write_back) EnqueueReorder(copy, copy->md, buf, buf->md);
}

}  // namespace cr::cpu
