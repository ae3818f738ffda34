// Per-environment state of an addon (the addon is context-aware: each worker_thread that loads
// it gets its own queue, buffer class and backend state).
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <string>

#include "queue.h"
#include "storage.h"

namespace cr {

class CommonContext {
 public:
  CommonContext(const char* backend, size_t max_pending) : backend(backend), queue(backend, max_pending) {
    // While profiling, each task's time includes the wait for the asynchronous work it launched.
    queue.SetProfileSettle([this] { Drain(); });
  }
  virtual ~CommonContext() = default;

  // Runs on the worker at every sync point, after the tasks queued before it: a backend whose
  // tasks only launch asynchronous work (the CUDA stream) waits for that work here and throws
  // what it failed with. CPU tasks have finished when they return, so the default does nothing.
  virtual void Drain() {}

  const char* const backend;
  Napi::FunctionReference buffer_ctor;
  // A derived context must call queue.Stop() first in its destructor, so that no task runs
  // while the backend state it uses is being destroyed.
  Queue queue;
};

CommonContext& GetContext(Napi::Env env);

// Wraps a storage in a new JS buffer handle.
Napi::Object WrapStorage(Napi::Env env, StoragePtr storage);

// The storage behind a JS buffer handle. Throws a TypeError for anything that is not a live
// handle made by this addon instance (a handle of another instance, a plain object, a released
// handle), so no JS value can be mistaken for memory.
StoragePtr UnwrapStorage(Napi::Env env, Napi::Value value, const char* what);

// Defines the buffer handle class and the functions every backend exports the same way:
// release, share, shapeOf, memory, sync, startProfile, stopProfile.
void InitCommon(Napi::Env env, Napi::Object exports, CommonContext* ctx);

// Enqueues `fill` (run on the worker; it writes into memory that `result` owns) and returns a
// Promise that resolves with `result` once it ran, or rejects with the first failure of any task
// queued before it. The event loop is never blocked.
Napi::Promise EnqueueReadback(Napi::Env env, const std::string& op, Napi::Value result,
                              std::function<void()> fill);

// Like EnqueueReadback, but blocks the calling (JS) thread until done and throws on failure.
void RunSync(Napi::Env env, const std::string& op, std::function<void()> fill);

}  // namespace cr
