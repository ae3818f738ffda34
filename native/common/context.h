// Per-environment state of an addon. The addon is context-aware: each worker_thread that loads
// it gets its own Context (queue, buffer handle class, cache) and its own Backend.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backend.h"
#include "completions.h"
#include "errors.h"
#include "keyed_cache.h"
#include "queue.h"
#include "storage.h"

namespace cr {

class Context {
 public:
  using BackendFactory = std::function<std::unique_ptr<Backend>(Context&)>;

  Context(const char* name, size_t max_pending, const BackendFactory& make_backend);
  // Stops the queue first, so that no task runs while the backend state it uses is destroyed.
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // The backend, able to run ops: throws its reason (ERR_<NAME>_UNAVAILABLE) otherwise.
  Backend& backend();
  // The backend whether or not it can run ops (info, settings that only record a value).
  Backend& backend_unchecked() { return *backend_; }

  // Runs on the worker in a sync task: the first failure of the tasks queued before it, or else
  // what `launch` throws; nothing when both went well. `launch` may set `*finish` to what waits
  // for the work it launched (see Completions).
  std::optional<Failure> RunAfterEarlierTasks(const std::function<Completion()>& launch, Completion* finish);

  // Stops the queue's worker (after the task it is running; the rest is dropped), then finishes
  // the sync points it handed to the completion thread; first makes any collective the worker
  // or a sync point waits in (waiting for other processes) fail with `why`, so that stopping
  // never waits for a peer. Idempotent.
  void Stop(const std::string& why);

  // Holds what a worker could not hand back to the JS thread because the environment was going
  // away (a readback whose promise can no longer be settled), until the context is destroyed on
  // the JS thread. Thread-safe.
  void KeepUntilTeardown(std::shared_ptr<void> p);

  // Registers (again) the environment cleanup hook that stops the queue, so that it is the last
  // one registered. Node runs cleanup hooks newest first, and when it tears an environment down
  // (a worker thread ending or terminated) it deletes each readback's thread-safe function in
  // that function's hook: the worker must be stopped before, or a readback task still running
  // calls into a deleted one. Called on the JS thread after each readback's is created.
  void KeepStopHookLast(napi_env env);

  // A captured step being recorded (ops/graph.cc): true between captureBegin and captureEnd or
  // captureAbort. JS thread only, like everything that enqueues.
  bool capturing = false;
  // The first thing RefuseInCapture refused during the capture, which captureEnd reports.
  std::string capture_refusal;
  // While capturing: records and throws ERR_CAPTURE_REFUSED ("<op>: <what> cannot be part of a
  // captured step; ..."); nothing otherwise. Called by whatever cannot become part of a CUDA graph: sync
  // points (a readback waits for work that, being captured, never runs), uploads (their pinned
  // staging and copy stream live outside the graph), collectives.
  void RefuseInCapture(const std::string& op, const std::string& what);

  // "cpu" or "cuda".
  const char* const name;
  Napi::FunctionReference buffer_ctor;
  Queue queue;
  // Where the sync points of an asynchronous backend wait (completions.h).
  Completions completions;
  // Emptied after the queue stops and before the backend goes (see ~Context).
  KeyedCache cache;

 private:
  std::unique_ptr<Backend> backend_;
  bool stop_hook_ = false;
  std::mutex orphans_mu_;
  std::vector<std::shared_ptr<void>> orphans_;
};

// The context of this environment: the one getter, for every backend.
Context& Ctx(Napi::Env env);

// Guard (errors.h) for the entry points of an addon: names the backend of this environment.
template <typename F>
Napi::Value Entry(const Napi::CallbackInfo& info, const char* op, F&& body) {
  return Guard(info, Ctx(info.Env()).name, op, std::forward<F>(body));
}

// Wraps a storage in a new JS buffer handle.
Napi::Object WrapStorage(Napi::Env env, StoragePtr storage);
// A JS value for an optional storage: the handle, or null.
Napi::Value WrapOptional(Napi::Env env, StoragePtr storage);

// Drops what a JS buffer handle holds (release()); a TypeError for anything but a handle of this
// addon instance. Releasing twice is harmless.
void ReleaseHandle(Napi::Env env, Napi::Value value);

// The storage behind a JS buffer handle. Throws a TypeError for anything that is not a live
// handle made by this addon instance (a handle of another instance, a plain object, a released
// handle), so no JS value can be mistaken for memory.
StoragePtr UnwrapStorage(Napi::Env env, Napi::Value value, const char* what);

// Sets up the context of this environment with the backend `make_backend` makes, and exports
// the whole native surface (ops/registry.cc): every addon exports the same functions.
void InitAddon(Napi::Env env, Napi::Object exports, const char* name, const Context::BackendFactory& make_backend);

// Enqueues `fill` (run on the worker; it writes into memory that `result` owns, or launches that
// and returns the Completion that finishes it) and returns a Promise that resolves with `result`
// once it is done, or rejects with the first failure of any task queued before it or of the
// work it launched. The event loop is never blocked.
Napi::Promise EnqueueReadback(Napi::Env env, const std::string& op, Napi::Value result,
                              std::function<Completion()> fill);

// Like EnqueueReadback, but blocks the calling (JS) thread until done and throws on failure.
void RunSync(Napi::Env env, const std::string& op, std::function<Completion()> fill);

}  // namespace cr
