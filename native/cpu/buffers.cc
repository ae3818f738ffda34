// Moving data in and out of the backend, reshape and casts. Host buffers are plain row-major
// unless an op produced a blocked layout; reading one back reorders it to plain.
#include <algorithm>
#include <array>
#include <cstring>

#include "../common/half.h"
#include "cpu_backend.h"

namespace cr::cpu {

StoragePtr CpuBackend::Upload(const UploadArgs& a) {
  CpuStoragePtr s = Alloc(a.dims, a.dtype, PlainDesc(a.dims, a.dtype));
  std::memcpy(s->data, a.values, s->bytes);
  return s;
}

StoragePtr CpuBackend::Fill(const FillArgs& a) {
  CpuStoragePtr s = Alloc(a.dims, a.dtype, PlainDesc(a.dims, a.dtype));
  const double value = a.value;
  const DType dtype = a.dtype;
  Push(a.task, [s, value, dtype] {
    const int64_t n = s->Numel();
    if (dtype == DType::kInt32) {
      std::fill_n(static_cast<int32_t*>(s->data), n, static_cast<int32_t>(value));
    } else if (dtype == DType::kFloat32) {
      std::fill_n(static_cast<float*>(s->data), n, static_cast<float>(value));
    } else {
      uint16_t bits;
      ConvertFromFloat(std::array<float, 1>{static_cast<float>(value)}.data(), &bits, 1, dtype);
      std::fill_n(static_cast<uint16_t*>(s->data), n, bits);
    }
  });
  return s;
}

StoragePtr CpuBackend::ZerosLike(const OpArgs& a, const StoragePtr& like) {
  CpuStoragePtr s = Alloc(like->dims, like->dtype, Cpu(like)->md);
  Push(a.task, [s] { std::memset(s->data, 0, s->bytes); });
  return s;
}

void CpuBackend::CopyPlain(const CpuStorage& src, void* dst) {
  const Desc plain = PlainDesc(src.dims, src.dtype);
  if (src.md == plain) {
    std::memcpy(dst, src.data, src.md.get_size());
    return;
  }
  memory from = Mem(src), to(plain, engine_, dst);
  CR_DNNL(dnnl::reorder(from, to).execute(stream_, from, to));
}

Completion CpuBackend::ReadPlain(const StoragePtr& s, void* dst) {
  CopyPlain(*Cpu(s), dst);
  return nullptr;
}

StoragePtr CpuBackend::Reshape(const ReshapeArgs& a) {
  CpuStoragePtr x = Cpu(a.x);
  CpuStoragePtr out = Alloc(a.dims, x->dtype, PlainDesc(a.dims, x->dtype));
  Push(a.task, [this, x, out] { CopyPlain(*x, out->data); });
  return out;
}

// A reorder into the same layout with the other type: oneDNN converts with round to nearest even.
StoragePtr CpuBackend::Cast(const CastArgs& a) {
  return Stored(Cpu(a.x), a.dtype);
}

// dst keeps its own layout: a blocked parameter stays blocked.
void CpuBackend::CopyInto(const CopyIntoArgs& a) {
  const CpuStoragePtr src = Cpu(a.src), dst = Cpu(a.dst);
  EnqueueReorder(src, src->md, dst, dst->md, "copyInto");
}

}  // namespace cr::cpu
