// Synchronized batch normalization's local parts on the CPU (see op_args.h): plain loops, not
// oneDNN, which has no batch norm whose statistics come from elsewhere in training (its
// use_global_stats backward drops the terms of the batch mean).
//
// The loops walk the activation in its own layout when it is NCHW-like or channel-blocked
// (nChw8c/nChw16c, what the convolutions choose), so nothing is reordered in a ResNet; another
// layout is reordered to plain NCHW first. Sums run in double over (image, channel block) tiles
// in parallel, then over the images per channel: one pass for the mean and one for the squared
// deviations (two passes, not Σx² − n·mean², which cancels catastrophically for a channel whose
// mean is large against its spread). Each op is memory-bound: two reads of x for the statistics,
// one read of x and dy for each backward part, next to the convolutions' compute.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "cpu_backend.h"

namespace cr::cpu {

namespace {

// The widest channel block the loops keep sums for (oneDNN's blocks are 4, 8 and 16).
constexpr int64_t kMaxBlock = 64;

struct Walk {
  const float* data;
  compat::ChannelBlocked layout;
  int64_t n, c, h, w;

  int64_t Blocks() const { return (c + layout.block - 1) / layout.block; }
  // Channels in block `cb` (the last may be partly padding).
  int64_t Lanes(int64_t cb) const { return std::min(layout.block, c - cb * layout.block); }
  int64_t At(int64_t in, int64_t cb, int64_t ih, int64_t iw) const {
    return in * layout.strides[0] + cb * layout.strides[1] + ih * layout.strides[2] + iw * layout.strides[3];
  }
};

// For every image n and channel c: part[n * C + c] = Σ over h, w of f(c, x[n, c, h, w], dy[...])
// (dy may be null). `f(c, x, dy)` returns a double.
template <typename F>
void SumPerImage(const Walk& x, const Walk* dy, std::vector<double>& part, F f) {
  part.assign(size_t(x.n * x.c), 0.0);
  const int64_t blocks = x.Blocks();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t in = 0; in < x.n; ++in) {
    for (int64_t cb = 0; cb < blocks; ++cb) {
      std::array<double, kMaxBlock> acc{};
      const int64_t lanes = x.Lanes(cb), c0 = cb * x.layout.block;
      for (int64_t ih = 0; ih < x.h; ++ih) {
        for (int64_t iw = 0; iw < x.w; ++iw) {
          const float* px = x.data + x.At(in, cb, ih, iw);
          if (dy) {
            // dy's layout may block differently: address each channel on its own.
            for (int64_t l = 0; l < lanes; ++l) {
              const int64_t c = c0 + l;
              const float g = dy->data[dy->At(in, c / dy->layout.block, ih, iw) + c % dy->layout.block];
              acc[size_t(l)] += f(c, px[l], g);
            }
          } else {
            for (int64_t l = 0; l < lanes; ++l) acc[size_t(l)] += f(c0 + l, px[l], 0.0f);
          }
        }
      }
      for (int64_t l = 0; l < lanes; ++l) part[size_t(in * x.c + c0 + l)] = acc[size_t(l)];
    }
  }
}

double SumOverImages(const std::vector<double>& part, int64_t n, int64_t c, int64_t channel) {
  double s = 0;
  for (int64_t in = 0; in < n; ++in) s += part[size_t(in * c + channel)];
  return s;
}

const float* Floats(const StoragePtr& s) { return static_cast<const float*>(Cpu(s)->data); }

}  // namespace

// `s` in a layout the loops can walk: its own when it is one, else plain NCHW (an enqueued
// reorder). `walk` gets the layout; its data pointer is set on the worker.
CpuStoragePtr CpuBackend::Walkable(const StoragePtr& s, compat::ChannelBlocked& layout) {
  CpuStoragePtr c = Cpu(s);
  if (compat::ChannelBlockedOf(c->md, layout) && layout.block <= kMaxBlock) return c;
  const Desc plain = PlainDesc(c->dims, c->dtype);
  compat::ChannelBlockedOf(plain, layout);
  return InLayout(c, plain);
}

StoragePtr CpuBackend::SyncBatchNormStats(const SyncBatchNormStatsArgs& a) {
  compat::ChannelBlocked layout{};
  CpuStoragePtr x = Walkable(a.x, layout);
  const std::vector<int64_t>& d = a.x->dims;
  CpuStoragePtr out = Alloc({3, d[1]}, DType::kFloat32, PlainDesc({3, d[1]}, DType::kFloat32));
  Push(a.task, [x, out, layout, d] {
    const Walk wx{static_cast<const float*>(x->data), layout, d[0], d[1], d[2], d[3]};
    const double count = double(d[0] * d[2] * d[3]);
    std::vector<double> part, mean(static_cast<size_t>(d[1]));
    SumPerImage(wx, nullptr, part, [](int64_t, float v, float) { return double(v); });
    for (int64_t c = 0; c < d[1]; ++c) mean[size_t(c)] = SumOverImages(part, d[0], d[1], c) / count;
    SumPerImage(wx, nullptr, part, [&mean](int64_t c, float v, float) {
      const double dev = double(v) - mean[size_t(c)];
      return dev * dev;
    });
    float* o = static_cast<float*>(out->data);
    for (int64_t c = 0; c < d[1]; ++c) {
      o[c] = float(mean[size_t(c)]);
      o[d[1] + c] = float(SumOverImages(part, d[0], d[1], c));
      o[2 * d[1] + c] = float(count);
    }
  });
  return out;
}

SyncBatchNormGathered CpuBackend::SyncBatchNormGather(const SyncBatchNormGatherArgs& a) {
  const int64_t ranks = a.gathered->dims[0], C = a.gathered->dims[2];
  const Desc vec = PlainDesc({C}, DType::kFloat32);
  SyncBatchNormGathered out{Alloc({C}, DType::kFloat32, vec), Alloc({C}, DType::kFloat32, vec), Alloc({C}, DType::kFloat32, vec)};
  StoragePtr g = a.gathered, rm = a.running_mean, rv = a.running_var;
  const double momentum = a.momentum;
  Push(a.task, [g, rm, rv, out, ranks, C, momentum] {
    const float* s = Floats(g);
    float* mean = static_cast<float*>(Cpu(out.mean)->data);
    float* var = static_cast<float*>(Cpu(out.var)->data);
    float* count = static_cast<float*>(Cpu(out.count)->data);
    for (int64_t c = 0; c < C; ++c) {
      // Chan, Golub and LeVeque's pairwise update: exact in exact arithmetic, and in floating
      // point it keeps the ranks' deviations apart from the (possibly large) means.
      double n = 0, m = 0, m2 = 0;
      for (int64_t r = 0; r < ranks; ++r) {
        const float* sr = s + r * 3 * C;
        const double nr = sr[2 * C + c];
        if (!(nr > 0)) continue;
        const double delta = double(sr[c]) - m, total = n + nr;
        m += delta * nr / total;
        m2 += double(sr[C + c]) + delta * delta * n * nr / total;
        n = total;
      }
      mean[c] = float(m);
      var[c] = float(n > 0 ? m2 / n : 0);
      count[c] = float(n);
      // batchNormForwardTraining's rule (batch_norm.cc): the unbiased variance, n / (n - 1).
      if (rm) {
        float* r = static_cast<float*>(Cpu(rm)->data);
        r[c] = float(momentum * m + (1 - momentum) * r[c]);
      }
      if (rv) {
        float* r = static_cast<float*>(Cpu(rv)->data);
        r[c] = float(momentum * m2 / std::max(n - 1, 1.0) + (1 - momentum) * r[c]);
      }
    }
  });
  return out;
}

SyncBatchNormSums CpuBackend::SyncBatchNormBackwardReduce(const SyncBatchNormBackwardReduceArgs& a) {
  compat::ChannelBlocked lx{}, ldy{};
  CpuStoragePtr x = Walkable(a.x, lx), dy = Walkable(a.dy, ldy);
  const std::vector<int64_t>& d = a.x->dims;
  const Desc vec = PlainDesc({d[1]}, DType::kFloat32);
  SyncBatchNormSums out{Alloc({d[1]}, DType::kFloat32, vec), Alloc({d[1]}, DType::kFloat32, vec)};
  StoragePtr mean = a.mean, var = a.var;
  const double eps = a.eps;
  Push(a.task, [x, dy, lx, ldy, d, mean, var, eps, out] {
    const Walk wx{static_cast<const float*>(x->data), lx, d[0], d[1], d[2], d[3]};
    const Walk wdy{static_cast<const float*>(dy->data), ldy, d[0], d[1], d[2], d[3]};
    const float* m = Floats(mean);
    const float* v = Floats(var);
    std::vector<double> sum_dy, sum_dy_dev;
    SumPerImage(wx, &wdy, sum_dy, [](int64_t, float, float g) { return double(g); });
    SumPerImage(wx, &wdy, sum_dy_dev, [m](int64_t c, float xv, float g) { return double(g) * (double(xv) - double(m[c])); });
    float* sdy = static_cast<float*>(Cpu(out.sum_dy)->data);
    float* sdyx = static_cast<float*>(Cpu(out.sum_dy_xhat)->data);
    for (int64_t c = 0; c < d[1]; ++c) {
      const double invstd = 1 / std::sqrt(double(v[c]) + eps);
      sdy[c] = float(SumOverImages(sum_dy, d[0], d[1], c));
      sdyx[c] = float(SumOverImages(sum_dy_dev, d[0], d[1], c) * invstd);
    }
  });
  return out;
}

StoragePtr CpuBackend::SyncBatchNormBackwardElemt(const SyncBatchNormBackwardElemtArgs& a) {
  compat::ChannelBlocked lx{}, ldy{};
  CpuStoragePtr x = Walkable(a.x, lx), dy = Walkable(a.dy, ldy);
  // dx in x's (walkable) layout, so that the convolution's backward below it reads its own.
  CpuStoragePtr dx = Alloc(x->dims, DType::kFloat32, x->md);
  const std::vector<int64_t>& d = a.x->dims;
  StoragePtr mean = a.mean, var = a.var, weight = a.weight, sum_dy = a.sum_dy, sum_dy_xhat = a.sum_dy_xhat, count = a.count;
  const double eps = a.eps;
  Push(a.task, [x, dy, dx, lx, ldy, d, mean, var, weight, sum_dy, sum_dy_xhat, count, eps] {
    // dx = scale · (dy − shift − (x − mean) · slope), per channel.
    const int64_t C = d[1];
    std::vector<float> scale(static_cast<size_t>(C)), shift(scale), slope(scale), mu(scale);
    for (int64_t c = 0; c < C; ++c) {
      const double invstd = 1 / std::sqrt(double(Floats(var)[c]) + eps), n = Floats(count)[c];
      scale[size_t(c)] = float(double(Floats(weight)[c]) * invstd);
      shift[size_t(c)] = float(double(Floats(sum_dy)[c]) / n);
      slope[size_t(c)] = float(invstd * double(Floats(sum_dy_xhat)[c]) / n);
      mu[size_t(c)] = Floats(mean)[c];
    }
    const Walk wx{static_cast<const float*>(x->data), lx, d[0], d[1], d[2], d[3]};
    const Walk wdy{static_cast<const float*>(dy->data), ldy, d[0], d[1], d[2], d[3]};
    float* out = static_cast<float*>(dx->data);
    const int64_t blocks = wx.Blocks();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t in = 0; in < d[0]; ++in) {
      for (int64_t cb = 0; cb < blocks; ++cb) {
        const int64_t lanes = wx.Lanes(cb), c0 = cb * lx.block;
        for (int64_t ih = 0; ih < d[2]; ++ih) {
          for (int64_t iw = 0; iw < d[3]; ++iw) {
            const int64_t at = wx.At(in, cb, ih, iw);
            for (int64_t l = 0; l < lanes; ++l) {
              const size_t c = size_t(c0 + l);
              const float g = wdy.data[wdy.At(in, (c0 + l) / ldy.block, ih, iw) + (c0 + l) % ldy.block];
              out[at + l] = scale[c] * (g - shift[c] - (wx.data[at + l] - mu[c]) * slope[c]);
            }
            // oneDNN requires the padding channels of a blocked layout to hold zeros.
            for (int64_t l = lanes; l < lx.block; ++l) out[at + l] = 0;
          }
        }
      }
    }
  });
  return dx;
}

}  // namespace cr::cpu
