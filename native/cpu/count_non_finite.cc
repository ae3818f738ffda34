// The gradient scaler's overflow check: one task over every tensor, reading each in plain layout
// (a blocked layout's padding is not a value).
#include <cmath>

#include "cpu_backend.h"

namespace cr::cpu {

namespace {

int64_t CountIn(const CpuStorage& s) {
  const int64_t n = s.Numel();
  int64_t count = 0;
  if (s.dtype == DType::kFloat32) {
    const float* p = static_cast<const float*>(s.data);
#pragma omp parallel for reduction(+ : count) if (s.bytes >= kSmallWorkBytes)
    for (int64_t i = 0; i < n; ++i) count += std::isfinite(p[i]) ? 0 : 1;
    return count;
  }
  // Half precision: infinite or NaN exactly when the exponent bits are all ones.
  const uint16_t* p = static_cast<const uint16_t*>(s.data);
  const uint16_t exponent = s.dtype == DType::kBFloat16 ? 0x7f80 : 0x7c00;
#pragma omp parallel for reduction(+ : count) if (s.bytes >= kSmallWorkBytes)
  for (int64_t i = 0; i < n; ++i) count += (p[i] & exponent) == exponent ? 1 : 0;
  return count;
}

}  // namespace

StoragePtr CpuBackend::CountNonFinite(const CountNonFiniteArgs& a) {
  std::vector<CpuStoragePtr> plain;
  plain.reserve(a.tensors.size());
  for (const StoragePtr& t : a.tensors) plain.push_back(InLayout(Cpu(t), PlainDesc(t->dims, t->dtype)));
  CpuStoragePtr out = Alloc({}, DType::kFloat32, PlainDesc({}, DType::kFloat32));
  Push(a.task, [plain = std::move(plain), out] {
    int64_t count = 0;
    for (const CpuStoragePtr& s : plain) count += CountIn(*s);
    *static_cast<float*>(out->data) = float(count);
  });
  return out;
}

}  // namespace cr::cpu
