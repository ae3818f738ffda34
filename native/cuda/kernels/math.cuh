// The arithmetic of the CUDA kernels, one element or one row at a time, as inline functions
// that compile for the host too: the kernels call them on the GPU, and host_checks.cc calls the
// same code on the CPU so that tests can compare it with the CPU backend without a GPU.
#pragma once

#include <math.h>
#include <stdint.h>

#include "../../common/half.h"

#ifdef __CUDACC__
#define CR_HD __host__ __device__ __forceinline__
#else
#define CR_HD inline
#endif

namespace cr::cuda::math {

// The element types kernels read and write. Arithmetic is in float: a half-precision value is
// widened on load and rounded to nearest even on store, with native/common/half.h's functions,
// so a value stored by a kernel is the one an upload or the CPU backend would store.
struct BFloat16 {
  uint16_t bits;
};
struct Float16 {
  uint16_t bits;
};

CR_HD float Load(float v) { return v; }
CR_HD float Load(BFloat16 v) { return BFloat16ToFloat(v.bits); }
CR_HD float Load(Float16 v) { return HalfToFloat(v.bits); }
CR_HD void Store(float* p, float v) { *p = v; }
CR_HD void Store(BFloat16* p, float v) { p->bits = FloatToBFloat16(v); }
CR_HD void Store(Float16* p, float v) { p->bits = FloatToHalf(v); }

// Where the element of logical (row-major NCHW) index i of a buffer is. 4-D half-precision
// buffers of the cuda backend are channels-last (cuda_backend.h): `c` and `hw` are then the
// channels and H·W of the logical shape; everything else is plain (`nhwc` false).
struct Layout {
  bool nhwc;
  int64_t c, hw;
};

CR_HD int64_t PhysicalIndex(const Layout& l, int64_t i) {
  if (!l.nhwc) return i;
  const int64_t image = l.c * l.hw, n = i / image, r = i % image;
  return (n * l.hw + r % l.hw) * l.c + r / l.hw;
}

CR_HD int64_t LogicalIndex(const Layout& l, int64_t j) {
  if (!l.nhwc) return j;
  const int64_t image = l.c * l.hw, n = j / image, r = j % image;
  return (n * l.c + r % l.c) * l.hw + r / l.c;
}

// Element j of a conversion: dst's physical element j gets the value of the same logical
// element in src, converted. A reshape keeps the logical (row-major) index, so src and dst may
// have different logical shapes as well as layouts and types.
template <typename S, typename D>
CR_HD void ConvertAt(const S* src, const Layout& from, D* dst, const Layout& to, int64_t j) {
  Store(dst + j, Load(src[PhysicalIndex(from, LogicalIndex(to, j))]));
}

CR_HD bool NonFinite(float v) { return !isfinite(v); }

// NaN propagates, as through the CPU backend's ReLU.
CR_HD float Relu(float x) { return (x > 0.f || x != x) ? x : 0.f; }
CR_HD float ReluGrad(float y, float dy) { return y > 0.f ? dy : 0.f; }
CR_HD float AddRelu(float a, float b) { return Relu(a + b); }

// Element i of the element-wise kernels, in float between a load and a store of T.
template <typename T>
CR_HD void ReluAt(const T* x, T* y, int64_t i) {
  Store(y + i, Relu(Load(x[i])));
}
template <typename T>
CR_HD void ReluBackwardAt(const T* y, const T* dy, T* dx, int64_t i) {
  Store(dx + i, ReluGrad(Load(y[i]), Load(dy[i])));
}
template <typename T>
CR_HD void ScaleAt(const T* x, float alpha, T* y, int64_t i) {
  Store(y + i, alpha * Load(x[i]));
}
template <typename T>
CR_HD void AddAt(const T* a, const T* b, bool relu, T* y, int64_t i) {
  const float sum = Load(a[i]) + Load(b[i]);
  Store(y + i, relu ? Relu(sum) : sum);
}

// PyTorch's SGD rule for one element (see Binding.sgdStep). `buf` is null without momentum.
struct SgdHyper {
  float lr, momentum, weight_decay;
  bool nesterov, first;
};

// One parameter of an SGD step.
struct SgdTensor {
  float* param;
  const float* grad;
  float* buf;  // null without momentum
  int64_t n;
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

// The rows t, t + threads, ... of the forward's one block, as thread t computes them: writes their
// probabilities and returns their summed loss. A label outside [0, k) is handed to `bad(row,
// label)` and its row skipped.
template <typename Bad>
CR_HD double SoftmaxXentRows(const float* logits, const int32_t* labels, int64_t n, int64_t k, double smoothing,
                             float* probs, int64_t t, int64_t threads, Bad&& bad) {
  double total = 0;
  for (int64_t i = t; i < n; i += threads) {
    const int32_t label = labels[i];
    if (label < 0 || label >= k) {
      bad(i, label);
      continue;
    }
    total += SoftmaxXentRow(logits + i * k, k, label, smoothing, probs + i * k);
  }
  return total;
}

// Element i of the backward's [N, K] output. A bad label is reported once per row (by its first
// element), and the row is left unwritten: the op fails at the next sync point.
template <typename Bad>
CR_HD void SoftmaxXentGradAt(const float* probs, const int32_t* labels, int64_t k, double smoothing, double scale,
                             float* dx, int64_t i, Bad&& bad) {
  const int64_t row = i / k;
  const int32_t label = labels[row];
  if (label < 0 || label >= k) {
    if (i % k == 0) bad(row, label);
    return;
  }
  dx[i] = SoftmaxXentGrad(probs[i], i % k == label, k, smoothing, scale);
}

// One plane of a 2-D pooling in PyTorch's floor mode: every window starts inside the padded input
// and holds at least one input element (padding is at most half the kernel).
struct PoolPlane {
  int64_t h, w, oh, ow;
  int64_t kh, kw, sh, sw, ph, pw;
  // Channels-last (NHWC) buffers: c channels lie between horizontally adjacent elements of a
  // plane. Plain NCHW: false, and c is unused.
  bool nhwc;
  int64_t c;
  // The distance between horizontally adjacent elements of one plane.
  CR_HD int64_t Step() const { return nhwc ? c : 1; }
};

// The windows along one axis that contain input position i: [*lo, *hi], empty when lo > hi.
// Window o covers o·s - p to o·s - p + k - 1.
CR_HD void CoveringWindows(int64_t i, int64_t k, int64_t s, int64_t p, int64_t out, int64_t* lo, int64_t* hi) {
  const int64_t first = i + p - k + 1;
  *lo = first <= 0 ? 0 : (first + s - 1) / s;
  const int64_t last = (i + p) / s;
  *hi = last < out - 1 ? last : out - 1;
}

// The index in the plane of window (oy, ox)'s maximum: the first one in row-major order on ties,
// and a NaN wins, as in PyTorch (and test/reference/ops64.ts). Padding never wins.
template <typename T>
CR_HD int64_t WindowArgmax(const T* x, const PoolPlane& g, int64_t oy, int64_t ox) {
  int64_t best = -1;
  float best_value = 0.f;
  for (int64_t ky = 0; ky < g.kh; ++ky) {
    const int64_t iy = oy * g.sh - g.ph + ky;
    if (iy < 0 || iy >= g.h) continue;
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      const int64_t ix = ox * g.sw - g.pw + kx;
      if (ix < 0 || ix >= g.w) continue;
      const float v = Load(x[(iy * g.w + ix) * g.Step()]);
      if (best < 0 || v > best_value || (v != v && best_value == best_value)) {
        best = iy * g.w + ix;
        best_value = v;
      }
    }
  }
  return best;
}

// Max pooling's input gradient at (iy, ix): the output gradients of the windows whose maximum it
// is, gathered in a fixed order (deterministic, no atomics).
template <typename T>
CR_HD float MaxPoolGradAt(const T* x, const T* dy, const PoolPlane& g, int64_t iy, int64_t ix) {
  int64_t y_lo, y_hi, x_lo, x_hi;
  CoveringWindows(iy, g.kh, g.sh, g.ph, g.oh, &y_lo, &y_hi);
  CoveringWindows(ix, g.kw, g.sw, g.pw, g.ow, &x_lo, &x_hi);
  const int64_t self = iy * g.w + ix;
  float sum = 0.f;
  for (int64_t oy = y_lo; oy <= y_hi; ++oy) {
    for (int64_t ox = x_lo; ox <= x_hi; ++ox) {
      if (WindowArgmax(x, g, oy, ox) == self) sum += Load(dy[(oy * g.ow + ox) * g.Step()]);
    }
  }
  return sum;
}

// Average pooling's input gradient at (iy, ix), padded zeros counted in every divisor (PyTorch's
// count_include_pad = true): each covering window's gradient over kh·kw.
template <typename T>
CR_HD float AvgPoolGradAt(const T* dy, const PoolPlane& g, int64_t iy, int64_t ix) {
  int64_t y_lo, y_hi, x_lo, x_hi;
  CoveringWindows(iy, g.kh, g.sh, g.ph, g.oh, &y_lo, &y_hi);
  CoveringWindows(ix, g.kw, g.sw, g.pw, g.ow, &x_lo, &x_hi);
  const float divisor = float(g.kh * g.kw);
  float sum = 0.f;
  for (int64_t oy = y_lo; oy <= y_hi; ++oy) {
    for (int64_t ox = x_lo; ox <= x_hi; ++ox) sum += Load(dy[(oy * g.ow + ox) * g.Step()]) / divisor;
  }
  return sum;
}

// Where element i of a pooling backward's dx (physical order) is: the offsets of its plane's
// first element in x (and dx) and in dy, and its position (iy, ix) in the plane. Plain NCHW planes
// are contiguous; channels-last ones interleave their channels.
struct PoolElement {
  int64_t x_base, dy_base, iy, ix;
};

CR_HD PoolElement PoolElementAt(const PoolPlane& g, int64_t i) {
  const int64_t hw = g.h * g.w, ohw = g.oh * g.ow;
  if (!g.nhwc) {
    const int64_t plane = i / hw, r = i % hw;
    return {plane * hw, plane * ohw, r / g.w, r % g.w};
  }
  const int64_t ch = i % g.c, r = (i / g.c) % hw, n = i / (g.c * hw);
  return {n * hw * g.c + ch, n * ohw * g.c + ch, r / g.w, r % g.w};
}

template <typename T>
CR_HD void MaxPoolBackwardAt(const T* x, const T* dy, T* dx, const PoolPlane& g, int64_t i) {
  const PoolElement e = PoolElementAt(g, i);
  Store(dx + i, MaxPoolGradAt(x + e.x_base, dy + e.dy_base, g, e.iy, e.ix));
}

template <typename T>
CR_HD void AvgPoolBackwardAt(const T* dy, T* dx, const PoolPlane& g, int64_t i) {
  const PoolElement e = PoolElementAt(g, i);
  Store(dx + i, AvgPoolGradAt(dy + e.dy_base, g, e.iy, e.ix));
}

}  // namespace cr::cuda::math
