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
      for (int64_t i = 0; i < n; ++i) out[i] = FloatToBFloat16(src[i]);
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
      for (int64_t i = 0; i < n; ++i) dst[i] = BFloat16ToFloat(in[i]);
      return;
    case DType::kFloat16:
      for (int64_t i = HasF16c() ? HalfToFloatF16c(in, dst, n) : 0; i < n; ++i) dst[i] = HalfToFloat(in[i]);
      return;
    default:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
  }
}

}  // namespace cr
