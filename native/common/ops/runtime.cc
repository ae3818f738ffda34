// The entry points that are about the backend rather than a tensor: info, memory statistics and
// limits, sync points, profiling, settings, the caching allocator, shutdown.
#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "../args.h"
#include "../context.h"
#include "registry.h"

namespace cr::ops {

namespace {

Napi::Value InfoValue(Napi::Env env, const BackendInfo::Value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return Napi::String::New(env, *s);
  if (const auto* d = std::get_if<double>(&v)) return Napi::Number::New(env, *d);
  return Napi::Boolean::New(env, std::get<bool>(v));
}

}  // namespace

// info() -> { backend, available, reason?, versions, ...details }
Napi::Value Info(const Napi::CallbackInfo& info) {
  return Entry(info, "info", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Context& ctx = Ctx(env);
    Backend& backend = ctx.backend_unchecked();
    const std::string why = backend.Unavailable();
    const BackendInfo bi = backend.Info();
    Napi::Object o = Napi::Object::New(env);
    o.Set("backend", ctx.name);
    o.Set("available", why.empty());
    if (!why.empty()) o.Set("reason", why);
    Napi::Object versions = Napi::Object::New(env);
    for (const auto& [name, version] : bi.versions) versions.Set(name, version);
    o.Set("versions", versions);
    for (const auto& [key, value] : bi.details) o.Set(key, InfoValue(env, value));
    return o;
  });
}

Napi::Value Memory(const Napi::CallbackInfo& info) {
  MemoryStats st = Storage::Stats(Ctx(info.Env()).backend_unchecked().MemoryDomain());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("buffers", Napi::Number::New(info.Env(), double(st.live_buffers)));
  o.Set("bytes", Napi::Number::New(info.Env(), double(st.live_bytes)));
  o.Set("peakBytes", Napi::Number::New(info.Env(), double(st.peak_bytes)));
  o.Set("limitBytes", Napi::Number::New(info.Env(), double(st.limit_bytes)));
  o.Set("pendingOps", Napi::Number::New(info.Env(), double(Ctx(info.Env()).queue.Pending())));
  return o;
}

// Bytes the C heap has handed out and not taken back (glibc's mallinfo2), whoever asked for them:
// unlike RSS it does not move with fragmentation or with memory malloc keeps after a free, so a
// soak test can see a leak of a few bytes per step. -1 where it cannot be measured.
Napi::Value HeapInUse(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  return Napi::Number::New(info.Env(), double(mi.uordblks + mi.hblkhd));
#else
  return Napi::Number::New(info.Env(), -1);
#endif
}

Napi::Value SetMemoryLimit(const Napi::CallbackInfo& info) {
  return Entry(info, "setMemoryLimit", [&]() -> Napi::Value {
    const int64_t bytes = IntArg(info, 0, "bytes");
    if (bytes < 0) ThrowRangeError("setMemoryLimit: expected a byte count >= 0 (0 for no limit)");
    Storage::SetLimit(bytes, Ctx(info.Env()).backend_unchecked().MemoryDomain());
    return info.Env().Undefined();
  });
}

Napi::Value Sync(const Napi::CallbackInfo& info) {
  return Entry(info, "sync", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    return EnqueueReadback(info.Env(), "sync", info.Env().Undefined(), [&backend] { return backend.Drain(); });
  });
}

Napi::Value SyncBlocking(const Napi::CallbackInfo& info) {
  return Entry(info, "syncBlocking", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    RunSync(info.Env(), "syncBlocking", [&backend] { return backend.Drain(); });
    return info.Env().Undefined();
  });
}

// Stops the worker after the task it is running and drops the rest. The library calls it when the
// process exits (process.exit(), an uncaught exception): Node then runs no environment teardown,
// and a task still running while exit() destroys the libraries' statics (oneDNN frees its JIT
// code) crashes the process. Ops enqueued afterwards throw ERR_SHUT_DOWN.
Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  Ctx(info.Env()).Stop("the process is exiting");
  return info.Env().Undefined();
}

// startProfile(byShape?): starts recording per-op execution times on the worker (see
// Queue::StartProfile).
Napi::Value StartProfile(const Napi::CallbackInfo& info) {
  return Entry(info, "startProfile", [&]() -> Napi::Value {
    const bool by_shape = info.Length() > 0 && !info[0].IsUndefined() && BoolArg(info, 0, "byShape");
    Ctx(info.Env()).queue.StartProfile(by_shape);
    return info.Env().Undefined();
  });
}

// Stops recording: { wallMs, busyMs, ops: [{ op, calls, totalMs }] }.
Napi::Value StopProfile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  QueueProfile p = Ctx(env).queue.StopProfile();
  Napi::Array ops = Napi::Array::New(env, p.ops.size());
  uint32_t i = 0;
  for (const auto& [name, total] : p.ops) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("op", Napi::String::New(env, name));
    o.Set("calls", Napi::Number::New(env, double(total.calls)));
    o.Set("totalMs", Napi::Number::New(env, double(total.ns) / 1e6));
    ops.Set(i++, o);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("wallMs", Napi::Number::New(env, double(p.wall_ns) / 1e6));
  out.Set("busyMs", Napi::Number::New(env, double(p.busy_ns) / 1e6));
  out.Set("ops", ops);
  return out;
}

// setNumThreads(n): the threads the backend's worker computes with (oneDNN's OpenMP threads; on
// the GPU checked but without effect).
Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return Entry(info, "setNumThreads", [&]() -> Napi::Value {
    const int64_t n = IntArg(info, 0, "threads");
    if (n < 1 || n > 1024) ThrowRangeError("setNumThreads: expected 1 to 1024 threads, got " + std::to_string(n));
    Ctx(info.Env()).backend_unchecked().SetNumThreads(int(n));
    return info.Env().Undefined();
  });
}

// setTf32(enabled): TF32 tensor-core math for float32 convolutions enqueued afterwards (CUDA; the
// CPU has none, and accepts the setting without effect).
Napi::Value SetTf32(const Napi::CallbackInfo& info) {
  return Entry(info, "setTf32", [&]() -> Napi::Value {
    Ctx(info.Env()).backend_unchecked().SetTf32(BoolArg(info, 0, "enabled"));
    return info.Env().Undefined();
  });
}

// useDevice(index): binds this addon instance to a device before its first op (a second GPU is
// served by a second instance of the CUDA addon, each with its own queue and stream).
Napi::Value UseDevice(const Napi::CallbackInfo& info) {
  return Entry(info, "useDevice", [&]() -> Napi::Value {
    const int64_t index = IntArg(info, 0, "index");
    if (index < 0 || index >= kMemoryDomains) {
      ThrowRangeError("useDevice: expected a device index in [0, " + std::to_string(kMemoryDomains) + "), got " +
                      std::to_string(index));
    }
    Ctx(info.Env()).backend_unchecked().UseDevice(index);
    return info.Env().Undefined();
  });
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  return Entry(info, "emptyCache", [&]() -> Napi::Value {
    Ctx(info.Env()).backend_unchecked().EmptyCache();
    return info.Env().Undefined();
  });
}

Napi::Value CachedBytes(const Napi::CallbackInfo& info) {
  return Entry(info, "cachedBytes", [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), double(Ctx(info.Env()).backend_unchecked().CachedBytes()));
  });
}

}  // namespace cr::ops

namespace cr {

void Backend::UseDevice(int64_t index) {
  if (index != 0) {
    ThrowRangeError("useDevice: the " + std::string(ctx_.name) + " backend has one device, 0; got " + std::to_string(index));
  }
}

}  // namespace cr
