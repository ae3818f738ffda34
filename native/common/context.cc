#include "context.h"

#include <cctype>
#include <future>
#include <utility>

#include "errors.h"
#include "ops/registry.h"

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

bool IsHandle(Napi::Env env, Napi::Value value) {
  return value.IsObject() && value.As<Napi::Object>().InstanceOf(Ctx(env).buffer_ctor.Value());
}

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

void StopQueueHook(void* ctx) { static_cast<Context*>(ctx)->Stop("the JavaScript environment was torn down"); }

// What `f` throws, as a failure to report at a sync point.
std::optional<Failure> Capture(const char* backend, const std::function<void()>& f) {
  try {
    f();
  } catch (const NativeError& e) {
    return Failure{e.backend, e.op, e.code, e.what()};
  } catch (const std::bad_alloc&) {
    return Failure{backend, OpScope::CurrentOp(), "ERR_OUT_OF_MEMORY", OpScope::CurrentOp() + ": out of host memory"};
  } catch (const std::exception& e) {
    return Failure{backend, OpScope::CurrentOp(), "ERR_NATIVE", e.what()};
  }
  return std::nullopt;
}

}  // namespace

Context::Context(const char* name, size_t max_pending, const BackendFactory& make_backend)
    : name(name), queue(name, max_pending) {
  backend_ = make_backend(*this);
  // While profiling, each task's time includes the wait for the asynchronous work it launched
  // (none while a step is captured: its work is recorded, and runs when the graph is launched).
  queue.SetProfileSettle([this] {
    if (backend_->Capturing()) return;
    if (Completion wait = backend_->Drain()) wait();
  });
}

Context::~Context() {
  Stop("the JavaScript environment was torn down");
  cache.Clear();
  backend_.reset();
}

void Context::Stop(const std::string& why) {
  backend_->GroupAbort(why);
  queue.Stop();
  completions.Stop();
}

Backend& Context::backend() {
  std::string why = backend_->Unavailable();
  if (why.empty()) {
    try {
      backend_->Start();
      return *backend_;
    } catch (const NativeError&) {
      why = backend_->Unavailable();
    }
  }
  std::string upper;
  for (const char* c = name; *c; ++c) upper += char(std::toupper(static_cast<unsigned char>(*c)));
  Fail("ERR_" + upper + "_UNAVAILABLE", "the " + upper + " backend is unavailable: " + why);
}

std::optional<Failure> Context::RunAfterEarlierTasks(const std::function<Completion()>& launch, Completion* finish) {
  std::optional<Failure> failure = queue.TakeFailure();
  if (failure) return failure;
  return Capture(name, [&] { *finish = launch(); });
}

void Context::KeepUntilTeardown(std::shared_ptr<void> p) {
  std::lock_guard<std::mutex> lock(orphans_mu_);
  orphans_.push_back(std::move(p));
}

void Context::KeepStopHookLast(napi_env env) {
  if (stop_hook_) napi_remove_env_cleanup_hook(env, StopQueueHook, this);
  stop_hook_ = napi_add_env_cleanup_hook(env, StopQueueHook, this) == napi_ok;
}

Context& Ctx(Napi::Env env) { return *env.GetInstanceData<Context>(); }

Napi::Object WrapStorage(Napi::Env env, StoragePtr storage) {
  Napi::External<StoragePtr> ext = Napi::External<StoragePtr>::New(env, &storage);
  return Ctx(env).buffer_ctor.New({ext});
}

Napi::Value WrapOptional(Napi::Env env, StoragePtr storage) {
  return storage ? Napi::Value(WrapStorage(env, std::move(storage))) : env.Null();
}

void ReleaseHandle(Napi::Env env, Napi::Value value) {
  if (!IsHandle(env, value)) throw Napi::TypeError::New(env, "release: expected a NativeBuffer");
  BufferHandle::Unwrap(value.As<Napi::Object>())->storage.reset();
}

StoragePtr UnwrapStorage(Napi::Env env, Napi::Value value, const char* what) {
  if (!IsHandle(env, value)) {
    throw Napi::TypeError::New(env, OpScope::CurrentOp() + ": expected " + what +
                                        " to be a NativeBuffer of this addon instance");
  }
  StoragePtr s = BufferHandle::Unwrap(value.As<Napi::Object>())->storage;
  if (!s) {
    throw Napi::Error::New(env, OpScope::CurrentOp() + ": " + what + " was released (the tensor is disposed)");
  }
  return s;
}

void InitAddon(Napi::Env env, Napi::Object exports, const char* name, const Context::BackendFactory& make_backend) {
  auto* ctx = new Context(name, 1 << 14, make_backend);
  env.SetInstanceData<Context>(ctx);
  ctx->KeepStopHookLast(env);
  Napi::Function ctor = BufferHandle::Define(env);
  ctx->buffer_ctor = Napi::Persistent(ctor);
  exports.Set("NativeBuffer", ctor);
  ops::RegisterAll(env, exports);
}

void Context::RefuseInCapture(const std::string& op, const std::string& what) {
  if (!capturing) return;
  const std::string message = op + ": " + what + " cannot be part of a captured step (train.captureStep); the capture is abandoned";
  if (capture_refusal.empty()) capture_refusal = message;
  // Not Fail, which would name the entry point again: `op` names it with its shapes.
  throw NativeError(name, op, "ERR_CAPTURE_REFUSED", message);
}

Napi::Promise EnqueueReadback(Napi::Env env, const std::string& op, Napi::Value result,
                              std::function<Completion()> fill) {
  Context& ctx = Ctx(env);
  ctx.RefuseInCapture(op, "a sync point");
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
  auto task = [&ctx, slot, tsfn, op, fill = std::move(fill)] {
    ReadbackJob* job = std::exchange(slot->job, nullptr);
    Completion finish;
    job->failure = ctx.RunAfterEarlierTasks(fill, &finish);
    const bool waits = finish != nullptr;
    ctx.completions.Run(
        [&ctx, job, tsfn, op, finish]() mutable {
          if (finish && !job->failure) {
            OpScope scope(ctx.name, op);
            job->failure = Capture(ctx.name, finish);
          }
          // If the environment is shutting down the call is refused: the promise can no longer be
          // observed, and the job's JS references must not be touched on this thread, so the
          // context keeps the job until it is destroyed on the JS thread.
          if (tsfn.BlockingCall(job) != napi_ok) ctx.KeepUntilTeardown(std::shared_ptr<ReadbackJob>(job));
          tsfn.Release();
        },
        waits);
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

void RunSync(Napi::Env env, const std::string& op, std::function<Completion()> fill) {
  Context& ctx = Ctx(env);
  ctx.RefuseInCapture(op, "a sync point");
  std::promise<std::optional<Failure>> done;
  std::future<std::optional<Failure>> result = done.get_future();
  ctx.queue.Push(op, [&ctx, &done, op, fill = std::move(fill)] {
    Completion finish;
    std::optional<Failure> failure = ctx.RunAfterEarlierTasks(fill, &finish);
    const bool waits = finish != nullptr;
    ctx.completions.Run(
        [&ctx, &done, op, failure, finish] {
          std::optional<Failure> f = failure;
          if (finish && !f) {
            OpScope scope(ctx.name, op);
            f = Capture(ctx.name, finish);
          }
          done.set_value(std::move(f));
        },
        waits);
  });
  std::optional<Failure> failure = result.get();
  if (failure) throw ToJsError(env, failure->backend, failure->op, failure->code, failure->message);
}

}  // namespace cr
