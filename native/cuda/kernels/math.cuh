// The arithmetic of the CUDA kernels, one element or one row at a time, as inline functions
// that compile for the host too: the kernels call them on the GPU, and host_checks.cc calls the
// same code on the CPU so that tests can compare it with the CPU backend without a GPU.
#pragma once

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define CR_HD __host__ __device__ __forceinline__
#else
#define CR_HD inline
#endif

namespace cr::cuda::math {

// NaN propagates, as through the CPU backend's ReLU.
CR_HD float Relu(float x) { return (x > 0.f || x != x) ? x : 0.f; }
CR_HD float ReluGrad(float y, float dy) { return y > 0.f ? dy : 0.f; }
CR_HD float AddRelu(float a, float b) { return Relu(a + b); }

// PyTorch's SGD rule for one element (see Binding.sgdStep). `buf` is null without momentum.
struct SgdHyper {
  float lr, momentum, weight_decay;
  bool nesterov, first;
};

CR_HD void SgdElement(float* p, float g, float* buf, const SgdHyper& h) {
  float d = h.weight_decay != 0.f ? g + h.weight_decay * *p : g;
  if (buf) {
    const float v = h.first ? d : h.momentum * *buf + d;
    *buf = v;
    d = h.nesterov ? d + h.momentum * v : v;
  }
  *p -= h.lr * d;
}

// One row of mean softmax cross-entropy with label smoothing: writes the row's probabilities
// and returns its (unnormalized) loss, -sum_j q_j log p_j with q = (1 - s)·onehot + s/K.
// Double accumulation, as on the CPU backend.
CR_HD double SoftmaxXentRow(const float* row, int64_t k, int32_t label, double smoothing, float* prow) {
  double max = row[0];
  for (int64_t j = 1; j < k; ++j) max = fmax(max, double(row[j]));
  double sum = 0;
  for (int64_t j = 0; j < k; ++j) sum += exp(double(row[j]) - max);
  const double lse = max + log(sum);
  double nll_sum = 0;
  for (int64_t j = 0; j < k; ++j) {
    const double nll = lse - double(row[j]);
    prow[j] = float(exp(-nll));
    nll_sum += nll;
  }
  return (1.0 - smoothing) * (lse - double(row[label])) + smoothing / double(k) * nll_sum;
}

// d loss / d logit for one element: (p - q) · dloss / N, `scale` being dloss / N.
CR_HD float SoftmaxXentGrad(float p, bool is_label, int64_t k, double smoothing, double scale) {
  const double off = smoothing / double(k);
  const double q = is_label ? 1.0 - smoothing + off : off;
  return float((double(p) - q) * scale);
}

}  // namespace cr::cuda::math
