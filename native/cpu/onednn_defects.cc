#include "onednn_defects.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "../common/half.h"
#include "dnnl_compat.h"

namespace cr::cpu::defects {

namespace {

using dnnl::memory;
using Desc = memory::desc;

// -1: as the library's version says; 0: off; 1: on (CUDNN_RESNET_ONEDNN_WORKAROUNDS).
int Forced() {
  static const int forced = [] {
    const char* v = std::getenv("CUDNN_RESNET_ONEDNN_WORKAROUNDS");
    if (!v || !*v) return -1;
    return std::strcmp(v, "0") == 0 ? 0 : 1;
  }();
  return forced;
}

bool RuntimeInRange(int from_major, int from_minor, int below_major, int below_minor) {
  const int forced = Forced();
  if (forced >= 0) return forced == 1;
  const dnnl_version_t* v = dnnl_version();
  const int at = v->major * 1000 + v->minor;
  return at >= from_major * 1000 + from_minor && at < below_major * 1000 + below_minor;
}

// The reorder defect is not known to be fixed: every 3.x release after 3.0 gets the workaround.
bool ReorderDefect() { return RuntimeInRange(3, 0, 1000, 0); }
bool StridedPointwiseDefect() { return RuntimeInRange(3, 0, 3, 12); }

// One element of a floating-point type, as float32 and back (the reorder may also convert).
float Load(memory::data_type t, const char* p) {
  uint16_t h;
  float f;
  switch (t) {
    case memory::data_type::bf16: std::memcpy(&h, p, 2); return BFloat16ToFloat(h);
    case memory::data_type::f16: std::memcpy(&h, p, 2); return HalfToFloat(h);
    default: std::memcpy(&f, p, 4); return f;
  }
}

void Store(memory::data_type t, float f, char* p) {
  uint16_t h;
  switch (t) {
    case memory::data_type::bf16: h = FloatToBFloat16(f); std::memcpy(p, &h, 2); return;
    case memory::data_type::f16: h = FloatToHalf(f); std::memcpy(p, &h, 2); return;
    default: std::memcpy(p, &f, 4); return;
  }
}

size_t ElementSize(memory::data_type t) {
  switch (t) {
    case memory::data_type::f32:
    case memory::data_type::s32: return 4;
    case memory::data_type::bf16:
    case memory::data_type::f16: return 2;
    default: return 1;
  }
}

// Each dim's share of an element's offset, for every index of that dim: the offset of an
// element is the sum of its dims' shares, because inner-block digits depend on one dim each.
std::vector<std::vector<int64_t>> Shares(const Desc& md) {
  const compat::Blocking b = compat::BlockingOf(md);
  const size_t nd = b.dims.size(), nb = b.inner_blks.size();
  std::vector<int64_t> block(nd, 1), inner_stride(nb, 1), below(nb, 1);
  for (size_t k = 0; k < nb; ++k) block[b.inner_idxs[k]] *= b.inner_blks[k];
  // below[k]: how many indices of its dim one step of block k covers (blocks of the same dim
  // later in the list are finer); inner_stride[k]: elements between steps of block k.
  std::vector<int64_t> seen(nd, 1);
  int64_t stride = 1;
  for (size_t k = nb; k-- > 0;) {
    below[k] = seen[b.inner_idxs[k]];
    seen[b.inner_idxs[k]] *= b.inner_blks[k];
    inner_stride[k] = stride;
    stride *= b.inner_blks[k];
  }
  std::vector<std::vector<int64_t>> shares(nd);
  for (size_t d = 0; d < nd; ++d) {
    shares[d].resize(b.dims[d]);
    for (int64_t i = 0; i < b.dims[d]; ++i) {
      int64_t off = (i / block[d]) * b.strides[d];
      for (size_t k = 0; k < nb; ++k)
        if (size_t(b.inner_idxs[k]) == d) off += (i % block[d]) / below[k] % b.inner_blks[k] * inner_stride[k];
      shares[d][i] = off;
    }
  }
  return shares;
}

bool HasPadding(const compat::Blocking& b) { return b.padded != b.dims; }

}  // namespace

bool ReorderIsWrong(const Desc& src, const Desc& dst) {
  if (!ReorderDefect() || !compat::IsBlocked(src) || !compat::IsBlocked(dst)) return false;
  const compat::Blocking b = compat::BlockingOf(dst);
  return b.inner_blks.size() >= 2 && HasPadding(b);
}

void CopyBetweenLayouts(const Desc& src_md, const void* src, const Desc& dst_md, void* dst) {
  const memory::data_type from_type = compat::TypeOf(src_md), to_type = compat::TypeOf(dst_md);
  const bool same = from_type == to_type;
  const size_t from_size = ElementSize(from_type), to_size = ElementSize(to_type);
  if (HasPadding(compat::BlockingOf(dst_md))) std::memset(dst, 0, dst_md.get_size());
  const auto from = Shares(src_md), to = Shares(dst_md);
  const size_t nd = from.size();
  // The outermost dim is split across threads; the rest is walked like an odometer.
  const int64_t outer = nd ? int64_t(from[0].size()) : 1;
  int64_t inner_count = 1;
  for (size_t d = 1; d < nd; ++d) inner_count *= int64_t(from[d].size());
  const auto* s = static_cast<const char*>(src);
  auto* t = static_cast<char*>(dst);
#pragma omp parallel for
  for (int64_t i0 = 0; i0 < outer; ++i0) {
    std::vector<int64_t> idx(nd, 0);
    for (int64_t n = 0; n < inner_count; ++n) {
      int64_t fo = nd ? from[0][i0] : 0, to_off = nd ? to[0][i0] : 0;
      for (size_t d = 1; d < nd; ++d) {
        fo += from[d][idx[d]];
        to_off += to[d][idx[d]];
      }
      if (same)
        std::memcpy(t + to_off * to_size, s + fo * from_size, to_size);
      else
        Store(to_type, Load(from_type, s + fo * from_size), t + to_off * to_size);
      for (size_t d = nd; d-- > 1;) {
        if (++idx[d] < int64_t(from[d].size())) break;
        idx[d] = 0;
      }
    }
  }
}

bool AvoidStridedPointwiseBackwardData(const Conv2dGeometry& g) {
  if (!StridedPointwiseDefect()) return false;
  const bool pointwise = g.w[2] == 1 && g.w[3] == 1 && g.padding[0] == 0 && g.padding[1] == 0 &&
                         g.dilation[0] == 1 && g.dilation[1] == 1 && g.groups == 1;
  const bool strided = g.stride[0] > 1 || g.stride[1] > 1;
  // The scatter writes whole 16-channel blocks.
  return pointwise && strided && g.x[1] % 16 == 0;
}

std::vector<std::string> Active() {
  std::vector<std::string> active;
  if (ReorderDefect()) active.push_back("reorder-into-padded-double-blocked");
  if (StridedPointwiseDefect()) active.push_back("strided-pointwise-backward-data");
  return active;
}

}  // namespace cr::cpu::defects
