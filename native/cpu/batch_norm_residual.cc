#include "batch_norm_residual.h"

#include <algorithm>
#include <vector>

#include "../common/half.h"

namespace cr::cpu {

namespace {

using tag = memory::format_tag;

// The kernels walk memory in groups of 16 consecutive elements with one accumulator each, which
// the compiler keeps in vector registers. A channel block of 16, 8, 4 or 1 divides 16, so
// element i of a chunk belongs to channel lane i % block and accumulator i % 16.
constexpr int kLanes = 16;
// Elements per statistics chunk: the second pass over a chunk must still find it in L2.
constexpr int64_t kChunk = 16384;

inline float Load(const float* p, int64_t i) { return p[i]; }
inline float Load(const uint16_t* p, int64_t i) { return BFloat16ToFloat(p[i]); }
inline void Store(float* p, int64_t i, float v) { p[i] = v; }
// Round to nearest even without FloatToBFloat16's cases, which keep the loop from vectorizing:
// the values here are computed, so a NaN is the default quiet NaN, which rounding keeps a NaN.
inline void Store(uint16_t* p, int64_t i, float v) {
  const uint32_t u = FloatBits(v);
  p[i] = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// The bytes of one tensor in layout `l`, padding included.
template <typename T>
size_t Bytes(const BlockedLayout& l) {
  return size_t(l.n * l.blocks * l.hw * l.block) * sizeof(T);
}

// How a layout's slabs (one image, one channel block: hw·block contiguous elements) are cut.
struct Chunking {
  int64_t positions;  // spatial positions per chunk
  int64_t per_slab;   // chunks per slab
  int64_t items;      // chunks in the tensor

  explicit Chunking(const BlockedLayout& l)
      : positions(std::max<int64_t>(1, kChunk / l.block)),
        per_slab((l.hw + positions - 1) / positions),
        items(l.n * l.blocks * per_slab) {}

  // The first element of chunk `item` and its element count.
  std::pair<int64_t, int64_t> Range(const BlockedLayout& l, int64_t item) const {
    const int64_t slab = item / per_slab, chunk = item % per_slab;
    const int64_t s0 = chunk * positions, s1 = std::min(l.hw, s0 + positions);
    return {(slab * l.hw + s0) * l.block, (s1 - s0) * l.block};
  }
  int64_t Block(const BlockedLayout& l, int64_t item) const { return (item / per_slab) % l.blocks; }
};

// One chunk's statistics per lane: its mean is shift + sum / count, the sum taken of x - shift
// (shift: the chunk's first value of the lane), so that the float32 sum adds terms of the size of
// the spread rather than of the values; m2 is the sum of squared deviations from that mean.
struct ChunkStats {
  float shift, sum, m2;
};

// The per-chunk loops are compiled twice, for AVX-512 (x86-64-v4) and for any x86-64, and the
// loader picks one for the CPU: the portable build would use 16-byte vectors only, which leaves
// the bfloat16 conversions compute-bound (measured: 2.2× slower output pass).
template <int B, typename T>
__attribute__((target_clones("arch=x86-64-v4", "default"))) void ChunkMoments(const T* p, int64_t len, ChunkStats* out) {
  float k[kLanes], acc[kLanes] = {};
  for (int j = 0; j < kLanes; ++j) k[j] = Load(p, j % B);
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += Load(p, i + j) - k[j];
  }
  for (; i < len; ++i) acc[i % kLanes] += Load(p, i) - k[i % kLanes];
  float sum[B] = {};
  for (int j = 0; j < kLanes; ++j) sum[j % B] += acc[j];
  const float count = float(len / B);
  float m[kLanes];
  for (int j = 0; j < kLanes; ++j) m[j] = k[j] + sum[j % B] / count;
  for (int j = 0; j < kLanes; ++j) acc[j] = 0;
  for (i = 0; i + kLanes <= len; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float d = Load(p, i + j) - m[j];
      acc[j] += d * d;
    }
  }
  for (; i < len; ++i) {
    const float d = Load(p, i) - m[i % kLanes];
    acc[i % kLanes] += d * d;
  }
  for (int l = 0; l < B; ++l) out[l] = {k[l], sum[l], 0.f};
  for (int j = 0; j < kLanes; ++j) out[j % B].m2 += acc[j];
}

template <int B, typename T>
void Moments(const BlockedLayout& l, const T* x, double* mean, double* var) {
  const Chunking ch(l);
  std::vector<ChunkStats> part(size_t(ch.items * B));
#pragma omp parallel for schedule(static) if (Bytes<T>(l) >= kSmallWorkBytes)
  for (int64_t item = 0; item < ch.items; ++item) {
    const auto [begin, len] = ch.Range(l, item);
    ChunkMoments<B>(x + begin, len, &part[size_t(item * B)]);
  }
  // Chan et al.: merging (n_a, mean_a, M2_a) with (n_b, mean_b, M2_b) gives
  // mean = mean_a + δ·n_b/n and M2 = M2_a + M2_b + δ²·n_a·n_b/n, δ = mean_b - mean_a.
  for (int64_t c = 0; c < l.c; ++c) {
    const int64_t cb = c / B, lane = c % B;
    double n = 0, m = 0, m2 = 0;
    for (int64_t img = 0; img < l.n; ++img) {
      for (int64_t k = 0; k < ch.per_slab; ++k) {
        const int64_t item = (img * l.blocks + cb) * ch.per_slab + k;
        const ChunkStats& st = part[size_t(item * B + lane)];
        const double nb = double(ch.Range(l, item).second / B);
        const double mb = double(st.shift) + double(st.sum) / nb;
        const double total = n + nb, delta = mb - m;
        m += delta * nb / total;
        m2 += double(st.m2) + delta * delta * n * nb / total;
        n = total;
      }
    }
    mean[c] = m;
    var[c] = m2 / n;
  }
}

// y = (x - hi - lo)·scale + shift + z, then the ReLU, over one chunk whose lanes' channels
// have these constants (see Normalize).
template <int B, bool kRelu, typename T>
__attribute__((target_clones("arch=x86-64-v4", "default"))) void NormalizeChunk(const T* __restrict xp,
                                                                                 const T* __restrict zp,
                                                                                 T* __restrict yp, int64_t len,
                                                                                 const float* hi, const float* lo,
                                                                                 const float* sv, const float* bv) {
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = (Load(xp, i + j) - hi[j] - lo[j]) * sv[j] + bv[j] + Load(zp, i + j);
      Store(yp, i + j, kRelu ? std::max(v, 0.f) : v);
    }
  }
  for (; i < len; ++i) {
    const int j = int(i % kLanes);
    const float v = (Load(xp, i) - hi[j] - lo[j]) * sv[j] + bv[j] + Load(zp, i);
    Store(yp, i, kRelu ? std::max(v, 0.f) : v);
  }
}

template <int B, bool kRelu, typename T>
void Normalize(const BlockedLayout& l, const T* x, const T* z, T* y, const double* mean, const float* scale,
               const float* shift) {
  const Chunking ch(l);
#pragma omp parallel for schedule(static) if (3 * Bytes<T>(l) >= kSmallWorkBytes)
  for (int64_t item = 0; item < ch.items; ++item) {
    const auto [begin, len] = ch.Range(l, item);
    const int64_t c0 = ch.Block(l, item) * B;
    // Per accumulator lane: the channel's mean as a float32 and its remainder (x - hi is exact
    // for x near the mean, so x - hi - lo keeps the mean's double precision), scale and shift.
    float hi[kLanes] = {}, lo[kLanes] = {}, sv[kLanes] = {}, bv[kLanes] = {};
    for (int j = 0; j < kLanes; ++j) {
      const int64_t c = c0 + j % B;
      if (c >= l.c) continue;
      hi[j] = float(mean[c]);
      lo[j] = float(mean[c] - double(hi[j]));
      sv[j] = scale[c];
      bv[j] = shift[c];
    }
    NormalizeChunk<B, kRelu>(x + begin, z + begin, y + begin, len, hi, lo, sv, bv);
    // The channels that pad the last block are written as zeros, whatever z holds there.
    if (c0 + B > l.c) {
      for (int64_t k = 0; k < len; k += B) {
        for (int64_t c = l.c - c0; c < B; ++c) Store(y + begin, k + c, 0.f);
      }
    }
  }
}

// Calls f.template operator()<B>() for the layout's block size.
template <typename F>
void WithBlock(const BlockedLayout& l, F&& f) {
  switch (l.block) {
    case 16: return f(std::integral_constant<int, 16>());
    case 8: return f(std::integral_constant<int, 8>());
    case 4: return f(std::integral_constant<int, 4>());
    default: return f(std::integral_constant<int, 1>());
  }
}

}  // namespace

std::optional<BlockedLayout> BlockedOf(const Desc& md) {
  const memory::dims d = compat::DimsOf(md);
  int64_t block;
  switch (LayoutOf(md)) {
    case tag::nChw16c: block = 16; break;
    case tag::nChw8c: block = 8; break;
    case tag::nChw4c: block = 4; break;
    case tag::nchw: block = 1; break;
    default: return std::nullopt;
  }
  return BlockedLayout{d[0], d[1], d[2] * d[3], block, (d[1] + block - 1) / block};
}

void BatchMoments(const BlockedLayout& l, DType dtype, const void* x, double* mean, double* var) {
  WithBlock(l, [&](auto b) {
    constexpr int B = decltype(b)::value;
    if (dtype == DType::kBFloat16) {
      Moments<B>(l, static_cast<const uint16_t*>(x), mean, var);
    } else {
      Moments<B>(l, static_cast<const float*>(x), mean, var);
    }
  });
}

void NormalizeAddRelu(const BlockedLayout& l, DType dtype, const void* x, const void* z, void* y, const double* mean,
                      const float* scale, const float* shift, bool relu) {
  WithBlock(l, [&](auto b) {
    constexpr int B = decltype(b)::value;
    auto run = [&](auto* typed) {
      using T = std::remove_const_t<std::remove_pointer_t<decltype(typed)>>;
      const T* xs = static_cast<const T*>(x);
      const T* zs = static_cast<const T*>(z);
      T* ys = static_cast<T*>(y);
      if (relu) {
        Normalize<B, true>(l, xs, zs, ys, mean, scale, shift);
      } else {
        Normalize<B, false>(l, xs, zs, ys, mean, scale, shift);
      }
    };
    if (dtype == DType::kBFloat16) {
      run(static_cast<uint16_t*>(nullptr));
    } else {
      run(static_cast<float*>(nullptr));
    }
  });
}

}  // namespace cr::cpu
