#include "cpu_backend.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <cctype>
#include <cstring>

#include "host_pool.h"

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
  return dtype == DType::kFloat32 ? memory::data_type::f32 : memory::data_type::s32;
}

Desc PlainDesc(const std::vector<int64_t>& dims, DType dtype) {
  static const memory::format_tag tags[] = {memory::format_tag::a, memory::format_tag::a,
                                            memory::format_tag::ab, memory::format_tag::abc,
                                            memory::format_tag::abcd, memory::format_tag::abcde};
  if (dims.empty()) return Desc({1}, DnnlType(dtype), memory::format_tag::a);
  if (dims.size() > 5) Fail("ERR_INVALID_ARG", "tensors of rank above 5 are not supported");
  return Desc(Dims(dims), DnnlType(dtype), tags[dims.size()]);
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

void CpuBackend::Execute(const dnnl::primitive_desc_base& pd, const dnnl::primitive& prim,
                         std::unordered_map<int, memory> args) {
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
  prim.execute(stream_, args);
}

CpuStoragePtr CpuBackend::InLayout(const CpuStoragePtr& s, const Desc& want) { return InLayout(s, want, s->md); }

CpuStoragePtr CpuBackend::InLayout(const CpuStoragePtr& s, const Desc& want, const Desc& view) {
  if (view == want) return s;
  CpuStoragePtr out = Alloc(s->dims, s->dtype, want);
  EnqueueReorder(s, view, out, want);
  return out;
}

void CpuBackend::EnqueueReorder(const CpuStoragePtr& src, const Desc& src_view, const CpuStoragePtr& dst,
                                const Desc& dst_view) {
  std::string key = "reorder;";
  AppendDesc(key, src_view);
  AppendDesc(key, dst_view);
  auto e = Cached<ReorderEntry>(key, [&] {
    auto pd = CR_DNNL(dnnl::reorder::primitive_desc(engine_, src_view, engine_, dst_view, Attr()));
    return std::make_shared<ReorderEntry>(ReorderEntry{pd, CR_DNNL(dnnl::reorder(pd))});
  });
  Push(Describe("reorder", {src.get()}), [this, e, src, src_view, dst, dst_view] {
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
