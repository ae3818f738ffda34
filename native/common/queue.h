// The ordered execution queue: one native worker thread per addon instance runs queued tasks in
// the order JS enqueued them, so JS calls return at once and only readback waits.
//
// A task that throws does not stop the queue: the first failure is kept (with the op's name and
// shapes) and handed to the next sync point (a readback or sync()), which rejects with it. Ops
// enqueued after a failure still run on whatever their inputs hold; their results are never
// observed without the failure being reported first.
//
// Profiling (opt-in, for benchmarks): between StartProfile() and StopProfile() the worker adds
// each task's wall time (steady_clock) to a total per op name (the task's description up to the
// first space: "conv2d", "batchNormBackward"), or per whole description with its input shapes
// ("conv2d [16, 64, 56, 56] [64, 64, 3, 3]"). Off, it costs one atomic load per task.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace cr {

struct Failure {
  std::string backend;
  std::string op;
  std::string code;
  std::string message;
};

struct OpTotal {
  uint64_t calls = 0;
  uint64_t ns = 0;
};

struct QueueProfile {
  std::map<std::string, OpTotal> ops;
  // Time the worker spent running tasks, and the time from StartProfile to StopProfile; the
  // difference is time it waited for JS to enqueue work.
  uint64_t busy_ns = 0;
  uint64_t wall_ns = 0;
};

class Queue {
 public:
  // `max_pending` bounds how far JS may run ahead of the worker: a script that enqueues in a
  // tight loop without ever awaiting would otherwise allocate every future output at once.
  Queue(const char* backend, size_t max_pending);
  ~Queue();
  // Stops the worker after the task it is running; tasks still queued are dropped (nobody can
  // observe them once the environment is going away). Idempotent.
  void Stop();
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  // `op` names the op and its shapes for error messages. Throws a NativeError (ERR_SHUT_DOWN)
  // once the queue is stopped, since nothing would run the task.
  void Push(std::string op, std::function<void()> task);

  // The first failure recorded since the last call, if any. Called from tasks (on the worker),
  // so a sync point sees exactly the failures of the tasks queued before it.
  std::optional<Failure> TakeFailure();

  size_t Pending();

  // Runs after every task while profiling, inside the task's timing and error handling: a
  // backend whose tasks only launch asynchronous work (CUDA) waits for it here, so that each
  // op's time is its execution and not its launch. Set once, before any task is pushed.
  void SetProfileSettle(std::function<void()> settle) { settle_ = std::move(settle); }
  // Both called on the JS thread. Start resets the totals; a task that is running when
  // profiling starts or stops is counted only if it began after the start.
  // by_shape: totals per task description (op and input shapes) rather than per op name.
  void StartProfile(bool by_shape);
  QueueProfile StopProfile();

 private:
  struct Item {
    std::string op;
    std::function<void()> task;
  };
  void Run();

  const char* backend_;
  const size_t max_pending_;
  std::mutex mu_;
  std::condition_variable has_work_;
  std::condition_variable has_room_;
  std::deque<Item> items_;
  bool stopping_ = false;
  std::optional<Failure> failure_;

  using Clock = std::chrono::steady_clock;
  void Record(const std::string& op, Clock::duration took);
  std::function<void()> settle_;
  std::atomic<bool> profiling_{false};
  std::mutex profile_mu_;
  QueueProfile profile_;
  bool profile_by_shape_ = false;
  Clock::time_point profile_start_;

  // Last: the worker starts in the constructor and must see every other member initialized.
  std::thread worker_;
};

}  // namespace cr
