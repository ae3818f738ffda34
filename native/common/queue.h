// The ordered execution queue: one native worker thread per addon instance runs queued tasks in
// the order JS enqueued them, so JS calls return at once and only readback waits.
//
// A task that throws does not stop the queue: the first failure is kept (with the op's name and
// shapes) and handed to the next sync point (a readback or sync()), which rejects with it. Ops
// enqueued after a failure still run on whatever their inputs hold; their results are never
// observed without the failure being reported first.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
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
  std::thread worker_;
};

}  // namespace cr
