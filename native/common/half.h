// Conversions between float32 and the two half-precision storage types: uploads of Float32Arrays
// into bfloat16/float16 buffers, readback into Float32Arrays, the kernels of the CPU backend that
// read or write half-precision memory themselves, and the CUDA kernels (compiled by nvcc, the
// scalar functions are __host__ __device__), so that both backends and every upload round alike.
//
// float32 -> half rounds to nearest, ties to even (what oneDNN's reorders, cuDNN and PyTorch
// do), keeps NaN a NaN and sends what is too large to infinity; half -> float32 is exact. To
// bfloat16, float32 subnormals (below 2^-126) become zero of their sign: the AVX512-BF16
// conversion instruction that oneDNN's bfloat16 kernels use treats them as zero, and uploads
// must give the values a cast on the backend gives.
#pragma once

#include <cstdint>
#include <cstring>

#include "storage.h"

#ifdef __CUDACC__
#define CR_HALF_HD __host__ __device__ inline
#else
#define CR_HALF_HD inline
#endif

namespace cr {

CR_HALF_HD uint32_t FloatBits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

CR_HALF_HD float BitsFloat(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// bfloat16 is the upper half of a float32: 8 exponent bits, 7 mantissa bits.
CR_HALF_HD float BFloat16ToFloat(uint16_t h) { return BitsFloat(uint32_t(h) << 16); }

// Selects rather than branches, so that loops over it vectorize.
CR_HALF_HD uint16_t FloatToBFloat16(float f) {
  const uint32_t u = FloatBits(f), a = u & 0x7fffffffu;
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  // A NaN whose payload sits in the dropped bits would round to infinity: it stays a quiet NaN.
  const uint32_t nan = (u >> 16) | 0x40u, zero = (u >> 16) & 0x8000u;
  return uint16_t(a > 0x7f800000u ? nan : a < 0x00800000u ? zero : rounded);
}

// IEEE binary16: 5 exponent bits (bias 15), 10 mantissa bits, subnormals below 2^-14.
CR_HALF_HD float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return BitsFloat(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    // Zero or subnormal: mantissa · 2^-24, exact in float32.
    const float v = float(mantissa) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return BitsFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

CR_HALF_HD uint16_t FloatToHalf(float f) {
  const uint32_t u = FloatBits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  // 65520 is half-way between 65504, the largest half, and 65536, which would be the next: ties
  // to even round it, and everything above, to infinity.
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);
  if (a >= 0x38800000u) {
    // Normal: re-bias the exponent (127 -> 15) and round away 13 mantissa bits; a carry moves into
    // the exponent, as it should.
    uint32_t r = a - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return uint16_t(sign | (r >> 13));
  }
  // Subnormal or zero: adding 0.5 makes the float32 unit in the last place 2^-24, the half's
  // subnormal step, so the addition itself rounds to nearest even; the difference of the bit
  // patterns is the half's mantissa (0x400, the smallest normal, when it rounds up to 2^-14).
  const float t = BitsFloat(a) + 0.5f;
  return uint16_t(sign | (FloatBits(t) - 0x3f000000u));
}

// n values of `dtype` (float32, bfloat16 or float16) from / to float32.
void ConvertFromFloat(const float* src, void* dst, int64_t n, DType dtype);
void ConvertToFloat(const void* src, float* dst, int64_t n, DType dtype);

}  // namespace cr
