#include "cpu_backend.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <optional>

#include "../common/half.h"
#include "host_pool.h"
#include "onednn_defects.h"

namespace cr::cpu {

void ThrowDnnl(const dnnl::error& err, const char* call, const char* file, int line) {
  std::string code = "DNNL_";
  for (const char* c = dnnl_status2str(err.status); *c; ++c) code += char(std::toupper(*c));
  const char* base = std::strrchr(file, '/');
  Fail(code, std::string(err.what()) + " (" + call + " at " + (base ? base + 1 : file) + ":" + std::to_string(line) + ")");
}

CpuStorage::CpuStorage(std::vector<int64_t> dims, DType dtype, const Desc& md_)
    : Storage(std::move(dims), dtype, md_.get_size()), md(md_), data(HostPool::Instance().Acquire(md_.get_size())) {}

CpuStorage::~CpuStorage() { HostPool::Instance().Release(data, bytes); }

CpuStoragePtr Alloc(const std::vector<int64_t>& dims, DType dtype, const Desc& md) {
  return std::make_shared<CpuStorage>(dims, dtype, md);
}

memory::dims Dims(const std::vector<int64_t>& d) { return memory::dims(d.begin(), d.end()); }

memory::data_type DnnlType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return memory::data_type::f32;
    case DType::kInt32: return memory::data_type::s32;
    case DType::kBFloat16: return memory::data_type::bf16;
    case DType::kFloat16: return memory::data_type::f16;
  }
  return memory::data_type::undef;
}

std::optional<DType> DTypeOf(memory::data_type t) {
  for (DType d : {DType::kFloat32, DType::kInt32, DType::kBFloat16, DType::kFloat16}) {
    if (DnnlType(d) == t) return d;
  }
  return std::nullopt;
}

DType ComputeDType(DType dtype) { return dtype == DType::kFloat16 ? DType::kFloat32 : dtype; }

Desc PlainDesc(const std::vector<int64_t>& dims, DType dtype) {
  static const memory::format_tag tags[] = {memory::format_tag::a, memory::format_tag::a,
                                            memory::format_tag::ab, memory::format_tag::abc,
                                            memory::format_tag::abcd, memory::format_tag::abcde};
  if (dims.empty()) return Desc({1}, DnnlType(dtype), memory::format_tag::a);
  if (dims.size() > 5) Fail("ERR_INVALID_ARG", "tensors of rank above 5 are not supported");
  return Desc(Dims(dims), DnnlType(dtype), tags[dims.size()]);
}

memory::format_tag LayoutOf(const Desc& md) {
  using tag = memory::format_tag;
  static constexpr tag kLayouts[] = {tag::nChw16c, tag::nChw8c, tag::nChw4c, tag::nhwc, tag::nchw};
  const memory::dims dims = compat::DimsOf(md);
  if (dims.size() != 4) return tag::undef;
  for (tag t : kLayouts) {
    if (md == CR_DNNL(Desc(dims, compat::TypeOf(md), t))) return t;
  }
  return tag::undef;
}

Desc WithType(const Desc& md, DType dtype) {
  const memory::dims dims = compat::DimsOf(md);
  const memory::format_tag layout = LayoutOf(md);
  if (layout != memory::format_tag::undef) return Desc(dims, DnnlType(dtype), layout);
  return PlainDesc(std::vector<int64_t>(dims.begin(), dims.end()), dtype);
}

dnnl::primitive_attr Attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

namespace {

struct ReorderEntry {
  dnnl::reorder::primitive_desc pd;
  dnnl::reorder prim;
};

}  // namespace

CpuBackend::CpuBackend(Context& ctx) : Backend(ctx), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

CpuBackend::~CpuBackend() { HostPool::Instance().Release(scratch_, scratch_bytes_); }

namespace {

// Limits this thread's next OpenMP regions to one thread for the guard's lifetime. oneDNN's
// element-wise, reorder and normalization primitives take their thread count from it when they
// execute (convolutions fix theirs when created, and are never this small anyway).
class OneThread {
 public:
  explicit OneThread(bool active) : prev_(active ? omp_get_max_threads() : 1) {
    if (prev_ > 1) omp_set_num_threads(1);
  }
  ~OneThread() {
    if (prev_ > 1) omp_set_num_threads(prev_);
  }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  const int prev_;
};

}  // namespace

void CpuBackend::Execute(const dnnl::primitive_desc_base& pd, const dnnl::primitive& prim,
                         std::unordered_map<int, memory> args) {
  size_t moved = 0;
  for (const auto& [arg, mem] : args) moved += mem.get_desc().get_size();
  const Desc scratchpad = pd.scratchpad_desc();
  const size_t bytes = scratchpad.get_size();
  if (bytes > 0) {
    if (scratch_bytes_ < bytes) {
      void* grown = HostPool::Instance().Acquire(bytes);
      HostPool::Instance().Release(scratch_, scratch_bytes_);
      scratch_ = grown;
      scratch_bytes_ = bytes;
    }
    args[DNNL_ARG_SCRATCHPAD] = memory(scratchpad, engine_, scratch_);
  }
  OneThread small(moved < kSmallWorkBytes);
  prim.execute(stream_, args);
}

CpuStoragePtr CpuBackend::InLayout(const CpuStoragePtr& s, const Desc& want) { return InLayout(s, want, s->md); }

CpuStoragePtr CpuBackend::InLayout(const CpuStoragePtr& s, const Desc& want, const Desc& view) {
  if (view == want) return s;
  // `want` may hold another type than s (a float16 weight read as float32, say): the label
  // follows what the buffer holds.
  CpuStoragePtr out = Alloc(s->dims, DTypeOf(compat::TypeOf(want)).value_or(s->dtype), want);
  EnqueueReorder(s, view, out, want);
  return out;
}

CpuStoragePtr CpuBackend::Stored(const CpuStoragePtr& s, DType dtype) {
  if (s->dtype == dtype) return s;
  CpuStoragePtr out = Alloc(s->dims, dtype, WithType(s->md, dtype));
  EnqueueReorder(s, s->md, out, out->md, "cast");
  return out;
}

CpuStoragePtr CpuBackend::Computable(const CpuStoragePtr& s) { return Stored(s, ComputeDType(s->dtype)); }

namespace {

// A float32 <-> half-precision conversion between whole buffers of the same layout. oneDNN 2.x
// converts float16 in its generic reorder ('simple:any'), one value at a time through the layout's
// offset arithmetic: 50-150 ns per value here, which made a float16 training step 25x slower than
// the float32 one it wraps (its casts and reorders took 99% of the profile). bfloat16 has a jit
// reorder, but autocast casts every weight and its gradient each step, mostly a few thousand
// values each, and oneDNN's reorder spent 20-80 us on each of those at two threads (waking its
// OpenMP team; 3.4 ms of a 79 ms ResNet-20 step) against 2-5 us in one thread here. The layouts
// being equal, padding included, the conversion runs over the bytes in order, with the same
// rounding (nearest even; bfloat16 flushes subnormal inputs to zero as oneDNN's does).
std::optional<DType> HalfType(memory::data_type t) {
  const std::optional<DType> d = DTypeOf(t);
  return d && (*d == DType::kBFloat16 || *d == DType::kFloat16) ? d : std::nullopt;
}

bool IsHalfConversion(const CpuStorage& src, const Desc& src_view, const CpuStorage& dst, const Desc& dst_view) {
  using dt = memory::data_type;
  const dt from = compat::TypeOf(src_view), to = compat::TypeOf(dst_view);
  const bool types = (HalfType(from) && to == dt::f32) || (from == dt::f32 && HalfType(to));
  if (!types) return false;
  // WithType knows the activation layouts and plain ones (others, like a convolution's blocked
  // weights, it maps to plain): the source must come back unchanged from it to be one of those.
  const DType from_type = HalfType(from).value_or(DType::kFloat32), to_type = HalfType(to).value_or(DType::kFloat32);
  return src_view == src.md && dst_view == dst.md && WithType(src_view, from_type) == src_view &&
         WithType(src_view, to_type) == dst_view;
}

void ConvertHalf(const CpuStorage& src, const CpuStorage& dst) {
  const std::optional<DType> widen = HalfType(compat::TypeOf(src.md));
  const DType half = widen ? *widen : *HalfType(compat::TypeOf(dst.md));
  const int64_t n = int64_t(src.md.get_size() / (widen ? 2 : 4));
  // Chunks of whole cache lines of both types; one thread for small buffers (kSmallWorkBytes).
  constexpr int64_t kChunk = int64_t(1) << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (size_t(n) * 6 >= kSmallWorkBytes)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, len = std::min(kChunk, n - begin);
    if (widen)
      ConvertToFloat(static_cast<const uint16_t*>(src.data) + begin, static_cast<float*>(dst.data) + begin, len, half);
    else
      ConvertFromFloat(static_cast<const float*>(src.data) + begin, static_cast<uint16_t*>(dst.data) + begin, len, half);
  }
}

}  // namespace

// A float16 <-> float32 reorder that also changes the layout (a float16 weight into a
// convolution's blocked float32 layout, its float32 gradient back to plain float16) is oneDNN 2.x's
// generic one-value-at-a-time reorder: 2.0 of a 3.5 s ResNet-50 fp16 step, and most of its 36 s
// first step. In two stages instead: the type in our conversion loop, in the layout the float16
// side already has, and the layout in oneDNN's float32 jit reorder. The float16 side must be a
// whole buffer in a layout WithType knows (IsHalfConversion's condition); the float32 one is
// free. The temporary float32 buffer lives until both stages have run.
bool CpuBackend::EnqueueHalfReorderInStages(const CpuStoragePtr& src, const Desc& src_view, const CpuStoragePtr& dst,
                                            const Desc& dst_view, const char* op) {
  using dt = memory::data_type;
  const dt from = compat::TypeOf(src_view), to = compat::TypeOf(dst_view);
  const bool widen = from == dt::f16 && to == dt::f32, narrow = from == dt::f32 && to == dt::f16;
  const bool whole = widen ? src_view == src->md && WithType(src_view, DType::kFloat16) == src_view
                           : dst_view == dst->md && WithType(dst_view, DType::kFloat16) == dst_view;
  if (!(widen || narrow) || !whole) return false;
  const Desc mid = WithType(widen ? src_view : dst_view, DType::kFloat32);
  CpuStoragePtr tmp = Alloc(widen ? src->dims : dst->dims, DType::kFloat32, mid);
  EnqueueReorder(src, src_view, tmp, mid, op);
  EnqueueReorder(tmp, mid, dst, dst_view, op);
  return true;
}

void CpuBackend::EnqueueReorder(const CpuStoragePtr& src, const Desc& src_view, const CpuStoragePtr& dst,
                                const Desc& dst_view, const char* op) {
  if (IsHalfConversion(*src, src_view, *dst, dst_view)) {
    Push(Describe(op, {src.get()}), [src, dst] { ConvertHalf(*src, *dst); });
    return;
  }
  if (EnqueueHalfReorderInStages(src, src_view, dst, dst_view, op)) return;
  if (defects::ReorderIsWrong(src_view, dst_view)) {
    Push(Describe(op, {src.get()}), [src, src_view, dst, dst_view] {
      defects::CopyBetweenLayouts(src_view, src->data, dst_view, dst->data);
    });
    return;
  }
  std::string key = "reorder;";
  AppendDesc(key, src_view);
  AppendDesc(key, dst_view);
  auto e = Cached<ReorderEntry>(key, [&] {
    auto pd = CR_DNNL(dnnl::reorder::primitive_desc(engine_, src_view, engine_, dst_view, Attr()));
    return std::make_shared<ReorderEntry>(ReorderEntry{pd, CR_DNNL(dnnl::reorder(pd))});
  });
  Push(Describe(op, {src.get()}), [this, e, src, src_view, dst, dst_view] {
    CR_DNNL(Execute(e->pd, e->prim, {{DNNL_ARG_FROM, Mem(*src, src_view)}, {DNNL_ARG_TO, Mem(*dst, dst_view)}}));
  });
}

namespace {

const char* IsaName(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

}  // namespace

BackendInfo CpuBackend::Info() {
  const dnnl_version_t* v = dnnl_version();
  BackendInfo info;
  info.versions = {{"onednn", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch)},
                   {"openmp", std::to_string(_OPENMP)}};
  info.details = {{"isa", std::string(IsaName(dnnl::get_effective_cpu_isa()))},
                  {"maxThreads", double(omp_get_max_threads())},
                  {"cachedPrimitives", double(ctx_.cache.Size())}};
  // Workarounds for defects of the oneDNN in use (onednn_defects.h), comma-separated.
  std::string workarounds;
  for (const std::string& w : defects::Active()) workarounds += (workarounds.empty() ? "" : ",") + w;
  info.details.emplace_back("onednnWorkarounds", workarounds);
  return info;
}

void CpuBackend::SetNumThreads(int threads) {
  // OpenMP's thread count is a property of the thread that starts parallel regions: the worker.
  Push("setNumThreads", [threads] { omp_set_num_threads(threads); });
}

// TF32 is a GPU tensor-core format: oneDNN's float32 CPU primitives compute in float32 anyway.
void CpuBackend::SetTf32(bool) {}

void CpuBackend::EmptyCache() { HostPool::Instance().Clear(); }

int64_t CpuBackend::CachedBytes() { return HostPool::Instance().CachedBytes(); }

}  // namespace cr::cpu
