// Per-environment state of an addon (the addon is context-aware: each worker_thread that loads
// it gets its own queue, buffer class and backend state).
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

  // Holds what a worker could not hand back to the JS thread because the environment was going
  // away (a readback whose promise can no longer be settled), until the context is destroyed on
  // the JS thread. Thread-safe.
  void KeepUntilTeardown(std::shared_ptr<void> p) {
    std::lock_guard<std::mutex> lock(orphans_mu_);
    orphans_.push_back(std::move(p));
  }

  // Registers (again) the environment cleanup hook that stops the queue, so that it is the last
  // one registered. Node runs cleanup hooks newest first, and when it tears an environment down
  // (a worker thread ending or terminated) it deletes each readback's thread-safe function in
  // that function's hook: the worker must be stopped before, or a readback task still running
  // calls into a deleted one. Called on the JS thread after each readback's is created.
  void KeepStopHookLast(napi_env env);

  const char* const backend;
  Napi::FunctionReference buffer_ctor;
  // A derived context must call queue.Stop() first in its destructor, so that no task runs
  // while the backend state it uses is being destroyed.
  Queue queue;

 private:
  bool stop_hook_ = false;
  std::mutex orphans_mu_;
  std::vector<std::shared_ptr<void>> orphans_;
};

CommonContext& GetContext(Napi::Env env);

// Wraps a storage in a new JS buffer handle.
Napi::Object WrapStorage(Napi::Env env, StoragePtr storage);

// The storage behind a JS buffer handle. Throws a TypeError for anything that is not a live
// handle made by this addon instance (a handle of another instance, a plain object, a released
// handle), so no JS value can be mistaken for memory.
StoragePtr UnwrapStorage(Napi::Env env, Napi::Value value, const char* what);

// Defines the buffer handle class and the functions every backend exports the same way:
// release, share, shapeOf, memory, sync, syncBlocking, shutdown, startProfile, stopProfile,
// heapInUse, setMemoryLimit.
void InitCommon(Napi::Env env, Napi::Object exports, CommonContext* ctx);

// Enqueues `fill` (run on the worker; it writes into memory that `result` owns) and returns a
// Promise that resolves with `result` once it ran, or rejects with the first failure of any task
// queued before it. The event loop is never blocked.
Napi::Promise EnqueueReadback(Napi::Env env, const std::string& op, Napi::Value result,
                              std::function<void()> fill);

// Like EnqueueReadback, but blocks the calling (JS) thread until done and throws on failure.
void RunSync(Napi::Env env, const std::string& op, std::function<void()> fill);

}  // namespace cr
