#include "context.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <future>
#include <utility>

#include "args.h"
#include "errors.h"

namespace cr {

namespace {

class BufferHandle : public Napi::ObjectWrap<BufferHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeBuffer",
                       {InstanceAccessor<&BufferHandle::Bytes>("bytes"),
                        InstanceAccessor<&BufferHandle::Released>("released")});
  }

  explicit BufferHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BufferHandle>(info) {
    if (info.Length() != 1 || !info[0].IsExternal() ||
        info[0].As<Napi::External<StoragePtr>>().Data() == nullptr) {
      throw Napi::TypeError::New(info.Env(), "NativeBuffer cannot be constructed from JavaScript");
    }
    storage = *info[0].As<Napi::External<StoragePtr>>().Data();
  }

  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), storage ? static_cast<double>(storage->bytes) : 0);
  }
  Napi::Value Released(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !storage); }

  StoragePtr storage;
};

struct ReadbackJob {
  Napi::Promise::Deferred deferred;
  // Empty when the promise resolves to undefined: Node 20 cannot reference primitives.
  Napi::ObjectReference result;
  std::optional<Failure> failure;
};

void SettleReadback(Napi::Env env, Napi::Function, std::nullptr_t*, ReadbackJob* job) {
  std::unique_ptr<ReadbackJob> owned(job);
  if (env == nullptr) return;
  // A worker thread being terminated still delivers pending calls while its environment is torn
  // down, but can no longer run JS: settling the promise fails, and nobody could observe it.
  try {
    if (job->failure) {
      const Failure& f = *job->failure;
      job->deferred.Reject(ToJsError(env, f.backend, f.op, f.code, f.message).Value());
    } else {
      job->deferred.Resolve(job->result.IsEmpty() ? env.Undefined() : Napi::Value(job->result.Value()));
    }
  } catch (const Napi::Error&) {
  }
}

struct JobSlot {
  explicit JobSlot(ReadbackJob* job) : job(job) {}
  ~JobSlot() { delete job; }
  JobSlot(const JobSlot&) = delete;
  JobSlot& operator=(const JobSlot&) = delete;
  ReadbackJob* job;
};

using ReadbackTsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, ReadbackJob, SettleReadback>;

Napi::Value Release(const Napi::CallbackInfo& info) {
  return Guard(info, GetContext(info.Env()).backend, "release", [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject() ||
        !info[0].As<Napi::Object>().InstanceOf(GetContext(info.Env()).buffer_ctor.Value())) {
      throw Napi::TypeError::New(info.Env(), "release: expected a NativeBuffer");
    }
    BufferHandle::Unwrap(info[0].As<Napi::Object>())->storage.reset();
    return info.Env().Undefined();
  });
}

Napi::Value Share(const Napi::CallbackInfo& info) {
  return Guard(info, GetContext(info.Env()).backend, "share", [&]() -> Napi::Value {
    return WrapStorage(info.Env(), UnwrapStorage(info.Env(), info[0], "buffer"));
  });
}

Napi::Value ShapeOf(const Napi::CallbackInfo& info) {
  return Guard(info, GetContext(info.Env()).backend, "shapeOf", [&]() -> Napi::Value {
    StoragePtr s = UnwrapStorage(info.Env(), info[0], "buffer");
    Napi::Array dims = Napi::Array::New(info.Env(), s->dims.size());
    for (size_t i = 0; i < s->dims.size(); ++i) dims.Set(i, Napi::Number::New(info.Env(), double(s->dims[i])));
    return dims;
  });
}

Napi::Value Memory(const Napi::CallbackInfo& info) {
  MemoryStats st = Storage::Stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("buffers", Napi::Number::New(info.Env(), double(st.live_buffers)));
  o.Set("bytes", Napi::Number::New(info.Env(), double(st.live_bytes)));
  o.Set("peakBytes", Napi::Number::New(info.Env(), double(st.peak_bytes)));
  o.Set("limitBytes", Napi::Number::New(info.Env(), double(st.limit_bytes)));
  o.Set("pendingOps", Napi::Number::New(info.Env(), double(GetContext(info.Env()).queue.Pending())));
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
  return Guard(info, GetContext(info.Env()).backend, "setMemoryLimit", [&]() -> Napi::Value {
    const int64_t bytes = IntArg(info, 0, "bytes");
    if (bytes < 0) throw Napi::RangeError::New(info.Env(), "setMemoryLimit: expected a byte count >= 0 (0 for no limit)");
    Storage::SetLimit(bytes);
    return info.Env().Undefined();
  });
}

Napi::Value Sync(const Napi::CallbackInfo& info) {
  return Guard(info, GetContext(info.Env()).backend, "sync", [&]() -> Napi::Value {
    CommonContext& ctx = GetContext(info.Env());
    return EnqueueReadback(info.Env(), "sync", info.Env().Undefined(), [&ctx] { ctx.Drain(); });
  });
}

// Stops the worker after the task it is running and drops the rest. The library calls it when the
// process exits (process.exit(), an uncaught exception): Node then runs no environment teardown,
// and a task still running while exit() destroys the libraries' statics (oneDNN frees its JIT
// code) crashes the process. Ops enqueued afterwards throw ERR_SHUT_DOWN.
Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  GetContext(info.Env()).queue.Stop();
  return info.Env().Undefined();
}

Napi::Value SyncBlocking(const Napi::CallbackInfo& info) {
  return Guard(info, GetContext(info.Env()).backend, "syncBlocking", [&]() -> Napi::Value {
    CommonContext& ctx = GetContext(info.Env());
    RunSync(info.Env(), "syncBlocking", [&ctx] { ctx.Drain(); });
    return info.Env().Undefined();
  });
}

// Starts recording per-op execution times on the worker (see Queue::StartProfile).
Napi::Value StartProfile(const Napi::CallbackInfo& info) {
  GetContext(info.Env()).queue.StartProfile();
  return info.Env().Undefined();
}

// Stops recording: { wallMs, busyMs, ops: [{ op, calls, totalMs }] }.
Napi::Value StopProfile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  QueueProfile p = GetContext(env).queue.StopProfile();
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

}  // namespace

CommonContext& GetContext(Napi::Env env) { return *env.GetInstanceData<CommonContext>(); }

static void StopQueueHook(void* ctx) { static_cast<CommonContext*>(ctx)->queue.Stop(); }

void CommonContext::KeepStopHookLast(napi_env env) {
  if (stop_hook_) napi_remove_env_cleanup_hook(env, StopQueueHook, this);
  stop_hook_ = napi_add_env_cleanup_hook(env, StopQueueHook, this) == napi_ok;
}

Napi::Object WrapStorage(Napi::Env env, StoragePtr storage) {
  Napi::External<StoragePtr> ext = Napi::External<StoragePtr>::New(env, &storage);
  return GetContext(env).buffer_ctor.New({ext});
}

StoragePtr UnwrapStorage(Napi::Env env, Napi::Value value, const char* what) {
  CommonContext& ctx = GetContext(env);
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(ctx.buffer_ctor.Value())) {
    throw Napi::TypeError::New(env, OpScope::CurrentOp() + ": expected " + what +
                                        " to be a NativeBuffer of this addon instance");
  }
  StoragePtr s = BufferHandle::Unwrap(value.As<Napi::Object>())->storage;
  if (!s) {
    throw Napi::Error::New(env, OpScope::CurrentOp() + ": " + what + " was released (the tensor is disposed)");
  }
  return s;
}

Napi::Promise EnqueueReadback(Napi::Env env, const std::string& op, Napi::Value result,
                              std::function<void()> fill) {
  CommonContext& ctx = GetContext(env);
  // The job belongs to the queued task until the task hands it to the JS thread. A task that never
  // runs (dropped when the environment goes away with work queued) frees it with the queue, on
  // the JS thread, since its JS references may only be deleted there.
  auto slot = std::make_shared<JobSlot>(
      new ReadbackJob{Napi::Promise::Deferred::New(env), Napi::ObjectReference(), std::nullopt});
  if (result.IsObject()) slot->job->result = Napi::Persistent(result.As<Napi::Object>());
  Napi::Promise promise = slot->job->deferred.Promise();
  // One thread-safe function per readback: it keeps the event loop alive exactly while the
  // readback is pending, and is released by the worker once it has delivered the job.
  ReadbackTsfn tsfn = ReadbackTsfn::New(env, "cudnn-resnet readback", 0, 1);
  ctx.KeepStopHookLast(env);
  auto task = [&ctx, slot, tsfn, fill = std::move(fill)]() mutable {
    ReadbackJob* job = std::exchange(slot->job, nullptr);
    job->failure = ctx.queue.TakeFailure();
    if (!job->failure) {
      try {
        fill();
      } catch (const NativeError& e) {
        job->failure = Failure{e.backend, e.op, e.code, e.what()};
      } catch (const std::exception& e) {
        job->failure = Failure{ctx.backend, OpScope::CurrentOp(), "ERR_NATIVE", e.what()};
      }
    }
    // If the environment is shutting down the call is refused: the promise can no longer be
    // observed, and the job's JS references must not be touched on this thread, so the context
    // keeps the job until it is destroyed on the JS thread.
    if (tsfn.BlockingCall(job) != napi_ok) ctx.KeepUntilTeardown(std::shared_ptr<ReadbackJob>(job));
    tsfn.Release();
  };
  try {
    ctx.queue.Push(op, std::move(task));
  } catch (...) {
    // The task, and with it the job, is gone.
    tsfn.Release();
    throw;
  }
  return promise;
}

void RunSync(Napi::Env env, const std::string& op, std::function<void()> fill) {
  CommonContext& ctx = GetContext(env);
  std::promise<std::optional<Failure>> done;
  std::future<std::optional<Failure>> result = done.get_future();
  ctx.queue.Push(op, [&ctx, &done, fill = std::move(fill)] {
    std::optional<Failure> failure = ctx.queue.TakeFailure();
    if (!failure) {
      try {
        fill();
      } catch (const NativeError& e) {
        failure = Failure{e.backend, e.op, e.code, e.what()};
      } catch (const std::exception& e) {
        failure = Failure{ctx.backend, OpScope::CurrentOp(), "ERR_NATIVE", e.what()};
      }
    }
    done.set_value(std::move(failure));
  });
  std::optional<Failure> failure = result.get();
  if (failure) throw ToJsError(env, failure->backend, failure->op, failure->code, failure->message);
}

void InitCommon(Napi::Env env, Napi::Object exports, CommonContext* ctx) {
  env.SetInstanceData<CommonContext>(ctx);
  ctx->KeepStopHookLast(env);
  Napi::Function ctor = BufferHandle::Define(env);
  ctx->buffer_ctor = Napi::Persistent(ctor);
  exports.Set("NativeBuffer", ctor);
  exports.Set("release", Napi::Function::New(env, Release, "release"));
  exports.Set("share", Napi::Function::New(env, Share, "share"));
  exports.Set("shapeOf", Napi::Function::New(env, ShapeOf, "shapeOf"));
  exports.Set("memory", Napi::Function::New(env, Memory, "memory"));
  exports.Set("heapInUse", Napi::Function::New(env, HeapInUse, "heapInUse"));
  exports.Set("setMemoryLimit", Napi::Function::New(env, SetMemoryLimit, "setMemoryLimit"));
  exports.Set("sync", Napi::Function::New(env, Sync, "sync"));
  exports.Set("syncBlocking", Napi::Function::New(env, SyncBlocking, "syncBlocking"));
  exports.Set("startProfile", Napi::Function::New(env, StartProfile, "startProfile"));
  exports.Set("stopProfile", Napi::Function::New(env, StopProfile, "stopProfile"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
}

}  // namespace cr
