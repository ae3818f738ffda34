#include "half.h"

namespace cr {

void ConvertFromFloat(const float* src, void* dst, int64_t n, DType dtype) {
  uint16_t* out = static_cast<uint16_t*>(dst);
  switch (dtype) {
    case DType::kBFloat16:
      for (int64_t i = 0; i < n; ++i) out[i] = FloatToBFloat16(src[i]);
      return;
    case DType::kFloat16:
      for (int64_t i = 0; i < n; ++i) out[i] = FloatToHalf(src[i]);
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
      for (int64_t i = 0; i < n; ++i) dst[i] = HalfToFloat(in[i]);
      return;
    default:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
  }
}

}  // namespace cr
