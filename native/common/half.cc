#include "half.h"

#include <immintrin.h>

namespace cr {

namespace {

// float16 <-> float32 eight values at a time with the F16C instructions (every x86-64 since
// 2012; IEEE round to nearest even, subnormals and NaN as FloatToHalf / HalfToFloat treat them).
// The CPU backend's float16 storage goes through here on every op, so the scalar loops' branches
// would cost more than the float32 work (see CpuBackend::EnqueueReorder).
__attribute__((target("avx,f16c"))) int64_t FloatToHalfF16c(const float* src, uint16_t* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  return i;
}

__attribute__((target("avx,f16c"))) int64_t HalfToFloatF16c(const uint16_t* in, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  return i;
}

// bfloat16 <-> float32 eight values at a time with AVX2, bit for bit FloatToBFloat16 /
// BFloat16ToFloat (nearest even, NaN kept quiet, subnormal inputs to signed zero): the scalar
// loop, which the compiler does not vectorize for baseline x86-64, took 5 ns a value here, and
// autocast casts every input batch and weight to bfloat16 each step.
__attribute__((target("avx2"))) int64_t FloatToBFloat16Avx2(const float* src, uint16_t* out, int64_t n) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  const __m256i inf = _mm256_set1_epi32(0x7f800000), min_normal = _mm256_set1_epi32(0x00800000);
  const __m256i quiet = _mm256_set1_epi32(0x40), sign = _mm256_set1_epi32(0x8000);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(src + i));
    const __m256i a = _mm256_and_si256(u, abs_mask), high = _mm256_srli_epi32(u, 16);
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), _mm256_and_si256(high, one)), 16);
    // |u| < 2^31, so the signed comparisons order the magnitudes correctly.
    const __m256i is_nan = _mm256_cmpgt_epi32(a, inf), is_tiny = _mm256_cmpgt_epi32(min_normal, a);
    __m256i r = _mm256_blendv_epi8(rounded, _mm256_and_si256(high, sign), is_tiny);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(high, quiet), is_nan);
    // Every lane is at most 0xffff: the unsigned-saturating pack keeps it; the pack works per
    // 128-bit half, so the permute brings the two halves' four results together.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(packed));
  }
  return i;
}

__attribute__((target("avx2"))) int64_t BFloat16ToFloatAvx2(const uint16_t* in, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_slli_epi32(wide, 16));
  }
  return i;
}

bool HasAvx2() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
  }();
  return has;
}

bool HasF16c() {
  // On first use, not in a static initializer: one may run before libgcc's, which fills in what
  // __builtin_cpu_supports reads (__builtin_cpu_init makes that explicit).
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  }();
  return has;
}

}  // namespace

void ConvertFromFloat(const float* src, void* dst, int64_t n, DType dtype) {
  uint16_t* out = static_cast<uint16_t*>(dst);
  switch (dtype) {
    case DType::kBFloat16:
      for (int64_t i = HasAvx2() ? FloatToBFloat16Avx2(src, out, n) : 0; i < n; ++i) out[i] = FloatToBFloat16(src[i]);
      return;
    case DType::kFloat16:
      for (int64_t i = HasF16c() ? FloatToHalfF16c(src, out, n) : 0; i < n; ++i) out[i] = FloatToHalf(src[i]);
      return;
    default:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
  }
}

void ConvertToFloat(const void* src, float* dst, int64_t n, DType dtype) {
  const uint16_t* in = static_cast<const uint16_t*>(src);
  switch (dtype) {
    case DType::kBFloat16:
      for (int64_t i = HasAvx2() ? BFloat16ToFloatAvx2(in, dst, n) : 0; i < n; ++i) dst[i] = BFloat16ToFloat(in[i]);
      return;
    case DType::kFloat16:
      for (int64_t i = HasF16c() ? HalfToFloatF16c(in, dst, n) : 0; i < n; ++i) dst[i] = HalfToFloat(in[i]);
      return;
    default:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
  }
}

}  // namespace cr
