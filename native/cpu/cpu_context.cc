#include "cpu_context.h"

#include "host_pool.h"

#include <oneapi/dnnl/dnnl_debug.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace cr::cpu {

void ThrowDnnl(const dnnl::error& err, const char* call, const char* file, int line) {
  std::string code = "DNNL_";
  for (const char* c = dnnl_status2str(err.status); *c; ++c) code += char(std::toupper(*c));
  const char* base = std::strrchr(file, '/');
  Fail(code, std::string(err.what()) + " (" + call + " at " + (base ? base + 1 : file) + ":" +
                 std::to_string(line) + ")");
}


CpuStorage::CpuStorage(std::vector<int64_t> dims, DType dtype, const Desc& md_)
    : Storage(std::move(dims), dtype, md_.get_size()), md(md_), data(HostPool::Instance().Acquire(md_.get_size())) {}

CpuStorage::~CpuStorage() { HostPool::Instance().Release(data, bytes); }

CpuContext::CpuContext()
    : CommonContext("cpu", 1 << 14), engine(dnnl::engine::kind::cpu, 0), stream(engine) {}

CpuContext::~CpuContext() {
  queue.Stop();
  HostPool::Instance().Release(scratch, scratch_bytes);
}

CpuContext& Ctx(Napi::Env env) { return static_cast<CpuContext&>(GetContext(env)); }

memory Mem(CpuContext& ctx, const CpuStorage& s) { return memory(s.md, ctx.engine, s.data); }
memory Mem(CpuContext& ctx, const CpuStorage& s, const Desc& as) { return memory(as, ctx.engine, s.data); }

CpuStoragePtr Alloc(const std::vector<int64_t>& dims, DType dtype, const Desc& md) {
  return std::make_shared<CpuStorage>(dims, dtype, md);
}

CpuStoragePtr Arg(Napi::Env env, Napi::Value v, const char* what) {
  return std::static_pointer_cast<CpuStorage>(UnwrapStorage(env, v, what));
}

CpuStoragePtr OptionalArg(Napi::Env env, Napi::Value v, const char* what) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  return Arg(env, v, what);
}

dnnl::primitive_attr Attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

void Execute(CpuContext& ctx, const dnnl::primitive& prim, std::unordered_map<int, memory> args) {
  const dnnl_memory_desc_t* md = dnnl_primitive_desc_query_md(prim.get_primitive_desc(), dnnl_query_scratchpad_md, 0);
  const size_t bytes = md ? dnnl_memory_desc_get_size(md) : 0;
  if (bytes > 0) {
    if (ctx.scratch_bytes < bytes) {
      void* grown = HostPool::Instance().Acquire(bytes);
      HostPool::Instance().Release(ctx.scratch, ctx.scratch_bytes);
      ctx.scratch = grown;
      ctx.scratch_bytes = bytes;
    }
    args[DNNL_ARG_SCRATCHPAD] = memory(Desc(*md), ctx.engine, ctx.scratch);
  }
  prim.execute(ctx.stream, args);
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

void AppendInts(std::string& key, const std::vector<int64_t>& v) {
  for (int64_t x : v) {
    key += std::to_string(x);
    key += ',';
  }
  key += ';';
}

void AppendDesc(std::string& key, const Desc& md) {
  const dnnl_memory_desc_t& d = md.data;
  key += std::to_string(int(d.data_type));
  key += ':';
  for (int i = 0; i < d.ndims; ++i) key += std::to_string(d.dims[i]) + ',';
  key += '/';
  for (int i = 0; i < d.ndims; ++i) key += std::to_string(d.padded_dims[i]) + ',';
  if (d.format_kind == dnnl_blocked) {
    const dnnl_blocking_desc_t& b = d.format_desc.blocking;
    key += 's';
    for (int i = 0; i < d.ndims; ++i) key += std::to_string(b.strides[i]) + ',';
    key += 'b';
    for (int i = 0; i < b.inner_nblks; ++i) {
      key += std::to_string(b.inner_idxs[i]) + 'x' + std::to_string(b.inner_blks[i]) + ',';
    }
  } else {
    key += 'k' + std::to_string(int(d.format_kind));
  }
  key += ';';
}

CpuStoragePtr InLayout(CpuContext& ctx, const CpuStoragePtr& s, const Desc& want) { return InLayout(ctx, s, want, s->md); }

CpuStoragePtr InLayout(CpuContext& ctx, const CpuStoragePtr& s, const Desc& want, const Desc& view) {
  if (view == want) return s;
  CpuStoragePtr out = Alloc(s->dims, s->dtype, want);
  EnqueueReorder(ctx, s, view, out, want);
  return out;
}

void EnqueueReorder(CpuContext& ctx, const CpuStoragePtr& src, const Desc& src_view, const CpuStoragePtr& dst,
                    const Desc& dst_view) {
  std::string key = "reorder;";
  AppendDesc(key, src_view);
  AppendDesc(key, dst_view);
  auto prim = ctx.Cached<dnnl::reorder>(key, [&] {
    return CR_DNNL(dnnl::reorder(dnnl::reorder::primitive_desc(ctx.engine, src_view, ctx.engine, dst_view, Attr())));
  });
  ctx.queue.Push(Describe("reorder", {src.get()}), [&ctx, prim, src, src_view, dst, dst_view] {
    memory from = Mem(ctx, *src, src_view), to = Mem(ctx, *dst, dst_view);
    CR_DNNL(Execute(ctx, *prim, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}));
  });
}

}  // namespace cr::cpu
