// Mean softmax cross-entropy with label smoothing (PyTorch's CrossEntropyLoss semantics), as
// plain loops: the logits are [N, classes], far too small for a oneDNN primitive to pay off,
// and the loss needs double accumulation that oneDNN's softmax would not give.
#include <cmath>

#include "cpu_backend.h"

namespace cr::cpu {

namespace {

// Runs on the worker, before any output is written, so a bad label fails the op instead of
// indexing out of bounds.
void CheckLabels(const int32_t* labels, int64_t n, int64_t k) {
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= k) {
      Fail("ERR_LABEL_OUT_OF_RANGE", "label " + std::to_string(labels[i]) + " at row " + std::to_string(i) +
                                         " is outside [0, " + std::to_string(k) + ")");
    }
  }
}

}  // namespace

SoftmaxCrossEntropyOutputs CpuBackend::SoftmaxCrossEntropyForward(const SoftmaxCrossEntropyForwardArgs& a) {
  CpuStoragePtr xs = InLayout(Cpu(a.logits), PlainDesc(a.logits->dims, DType::kFloat32));
  CpuStoragePtr ls = InLayout(Cpu(a.labels), PlainDesc(a.labels->dims, DType::kInt32));
  CpuStoragePtr loss = Alloc({}, DType::kFloat32, PlainDesc({}, DType::kFloat32));
  CpuStoragePtr probs = Alloc(a.logits->dims, DType::kFloat32, PlainDesc(a.logits->dims, DType::kFloat32));
  Push(a.task, [xs, ls, loss, probs, n = a.n, k = a.k, eps = a.smoothing] {
    const float* x = static_cast<const float*>(xs->data);
    const int32_t* y = static_cast<const int32_t*>(ls->data);
    float* p = static_cast<float*>(probs->data);
    CheckLabels(y, n, k);
    const double on = 1.0 - eps, off = eps / double(k);
    double total = 0;
#pragma omp parallel for reduction(+ : total) if (size_t(n * k) * 2 * sizeof(float) >= kSmallWorkBytes)
    for (int64_t i = 0; i < n; ++i) {
      const float* row = x + i * k;
      float* prow = p + i * k;
      double max = row[0];
      for (int64_t j = 1; j < k; ++j) max = std::fmax(max, double(row[j]));
      double sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += std::exp(double(row[j]) - max);
      const double lse = max + std::log(sum);
      // -sum_j q_j log p_j with -log p_j = lse - x_j and q = on·onehot + off.
      double nll_sum = 0;
      for (int64_t j = 0; j < k; ++j) {
        const double nll = lse - double(row[j]);
        prow[j] = float(std::exp(-nll));
        nll_sum += nll;
      }
      total += on * (lse - double(row[y[i]])) + off * nll_sum;
    }
    *static_cast<float*>(loss->data) = float(total / double(n));
  });
  return {loss, probs};
}

StoragePtr CpuBackend::SoftmaxCrossEntropyBackward(const SoftmaxCrossEntropyBackwardArgs& a) {
  CpuStoragePtr ps = InLayout(Cpu(a.probs), PlainDesc(a.probs->dims, DType::kFloat32));
  CpuStoragePtr ls = InLayout(Cpu(a.labels), PlainDesc(a.labels->dims, DType::kInt32));
  CpuStoragePtr dloss = Cpu(a.dloss);
  CpuStoragePtr dx = Alloc(a.probs->dims, DType::kFloat32, PlainDesc(a.probs->dims, DType::kFloat32));
  Push(a.task, [ps, ls, dloss, dx, n = a.n, k = a.k, eps = a.smoothing] {
    const float* p = static_cast<const float*>(ps->data);
    const int32_t* y = static_cast<const int32_t*>(ls->data);
    float* d = static_cast<float*>(dx->data);
    CheckLabels(y, n, k);
    const double scale = double(*static_cast<const float*>(dloss->data)) / double(n);
    const double off = eps / double(k), on = 1.0 - eps + off;
#pragma omp parallel for if (size_t(n * k) * 2 * sizeof(float) >= kSmallWorkBytes)
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < k; ++j) d[i * k + j] = float((double(p[i * k + j]) - off) * scale);
      d[i * k + y[i]] = float((double(p[i * k + y[i]]) - on) * scale);
    }
  });
  return dx;
}

}  // namespace cr::cpu
