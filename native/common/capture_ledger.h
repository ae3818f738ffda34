// The bookkeeping of a captured step (train.captureStep, native/cuda/graph.cc) that needs no GPU,
// so that test/cuda.test.ts exercises it on any machine (host_checks.cc, hostCaptureLedger).
//
// While a stream is being captured into a CUDA graph, nothing enqueued on it runs: it is recorded,
// and the graph replays it later, any number of times. Two things would then go wrong with the
// backend's memory, which is freed in stream order (cudaFreeAsync on the compute stream) by
// whichever thread drops a buffer's last reference:
// - a free enqueued on the capturing stream would be recorded too, and CUDA refuses to capture a
//   free of memory the graph did not allocate; so every free that arrives while a capture is
//   active, from any thread, is deferred here and enqueued once the capture has ended. Such a
//   buffer is one the graph does not use (see the next point), so freeing it after the capture is
//   in stream order with everything that used it;
// - a buffer the graph reads or writes must live as long as the graph, whoever disposes its
//   tensor: every buffer a captured task touches is kept (one reference, taken by the worker when
//   the task asks for its memory) and handed to the graph, which drops them when it is destroyed.
//   This is PyTorch's keep-alive approach rather than graph memory nodes: the addresses baked into
//   the graph stay valid by construction, and no free is ever part of a graph.
//
// Thread use: Begin, Keep, Fail and End on the worker; FreeOrDefer from any thread (the JS thread
// frees a buffer no queued task holds). The lock makes "is a capture active?" and "enqueue this
// free" one step, so that no free can land on the stream between the check and the capture's
// start or end.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace cr {

class CaptureLedger {
 public:
  // What a capture leaves when it ends: the frees it deferred (to enqueue now, in order) and the
  // buffers its graph uses (to keep as long as the graph).
  struct Ended {
    std::vector<void*> deferred;
    std::vector<std::shared_ptr<void>> kept;
    // Why the capture cannot be used ("" when it can): the first Fail.
    std::string failure;
  };

  // Runs `begin` (which starts the stream capture) under the lock and marks the capture active
  // once it returned.
  template <typename F>
  void Begin(F&& begin) {
    std::lock_guard<std::mutex> lock(mu_);
    begin();
    active_.store(true);
  }

  // Frees `p` now (`free_now(p)`, under the lock) or, while a capture is active, defers it.
  template <typename F>
  void FreeOrDefer(void* p, F&& free_now) {
    std::lock_guard<std::mutex> lock(mu_);
    if (active_.load()) {
      deferred_.push_back(p);
      return;
    }
    free_now(p);
  }

  // Worker. Keeps `owner` alive with the graph; `key` identifies it (the same buffer touched by
  // several captured tasks is kept once).
  void Keep(const void* key, std::shared_ptr<void> owner) {
    if (seen_.insert(key).second) kept_.push_back(std::move(owner));
  }

  // Worker. Marks the capture unusable (the first reason wins); the tasks still to come before
  // its end are then skipped, since what they would record could never run.
  void Fail(const std::string& why) {
    if (failure_.empty()) failure_ = why;
  }
  const std::string& failure() const { return failure_; }

  // Worker, or any thread for a racy hint. True between Begin and End.
  bool Active() const { return active_.load(); }

  // Runs `end` (which ends the stream capture) under the lock, marks the capture inactive and
  // hands back what it left. Harmless without an active capture.
  template <typename F>
  Ended End(F&& end) {
    Ended out;
    {
      std::lock_guard<std::mutex> lock(mu_);
      end();
      active_.store(false);
      out.deferred = std::move(deferred_);
      deferred_.clear();
    }
    out.kept = std::move(kept_);
    kept_.clear();
    seen_.clear();
    out.failure = std::move(failure_);
    failure_.clear();
    return out;
  }

 private:
  std::mutex mu_;
  std::atomic<bool> active_{false};
  std::vector<void*> deferred_;
  std::vector<std::shared_ptr<void>> kept_;
  std::unordered_set<const void*> seen_;
  std::string failure_;
};

}  // namespace cr
