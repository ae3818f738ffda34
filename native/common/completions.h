// The second half of sync points whose work is asynchronous. A CUDA readback's task only launches
// a copy and records an event on the stream; waiting for that event on the queue's worker would
// keep the worker from launching the ops queued behind the readback, and the GPU would run dry at
// every readback. The wait, and the delivery of the result to JS, run here instead, on one thread
// per context, in the order the sync points were queued.
//
// The CPU's sync points use it only while collectives run on Gloo's thread (the wait for them):
// a delivery with nothing to wait for, and nothing pending before it, runs on the calling thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace cr {

class Completions {
 public:
  Completions() = default;
  // Stop() first.
  ~Completions();
  Completions(const Completions&) = delete;
  Completions& operator=(const Completions&) = delete;

  // Runs `work` after every earlier one: on this thread when `waits` is false and nothing is
  // pending, else on the completion thread (started on first use). `work` must not throw.
  void Run(std::function<void()> work, bool waits);
  // Runs what is pending (each waits for launched work, so this ends), then joins the thread.
  // Later calls of Run run on the calling thread. Idempotent.
  void Stop();

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable has_work_;
  std::deque<std::function<void()>> items_;
  // Items queued or running: a delivery may run inline only when this is 0.
  size_t pending_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cr
