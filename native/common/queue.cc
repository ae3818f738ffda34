#include "queue.h"

#include <exception>
#include <new>

#include "errors.h"

namespace cr {

Queue::Queue(const char* backend, size_t max_pending)
    : backend_(backend), max_pending_(max_pending), worker_([this] { Run(); }) {}

Queue::~Queue() { Stop(); }

void Queue::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  has_work_.notify_all();
  has_room_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void Queue::Push(std::string op, std::function<void()> task) {
  std::unique_lock<std::mutex> lock(mu_);
  has_room_.wait(lock, [this] { return items_.size() < max_pending_ || stopping_; });
  if (stopping_) Fail("ERR_SHUT_DOWN", "the " + std::string(backend_) + " backend has shut down (the process is exiting)");
  items_.push_back(Item{std::move(op), std::move(task)});
  lock.unlock();
  has_work_.notify_one();
}

std::optional<Failure> Queue::TakeFailure() {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<Failure> f = std::move(failure_);
  failure_.reset();
  return f;
}

void Queue::StartProfile(bool by_shape) {
  std::lock_guard<std::mutex> lock(profile_mu_);
  profile_ = QueueProfile{};
  profile_by_shape_ = by_shape;
  profile_start_ = Clock::now();
  profiling_.store(true, std::memory_order_release);
}

QueueProfile Queue::StopProfile() {
  profiling_.store(false, std::memory_order_release);
  std::lock_guard<std::mutex> lock(profile_mu_);
  QueueProfile out = std::move(profile_);
  profile_ = QueueProfile{};
  out.wall_ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - profile_start_).count());
  return out;
}

void Queue::Record(const std::string& op, Clock::duration took) {
  const uint64_t ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count());
  std::lock_guard<std::mutex> lock(profile_mu_);
  OpTotal& t = profile_.ops[profile_by_shape_ ? op : op.substr(0, op.find(' '))];
  t.calls += 1;
  t.ns += ns;
  profile_.busy_ns += ns;
}

size_t Queue::Pending() {
  std::lock_guard<std::mutex> lock(mu_);
  return items_.size();
}

void Queue::Run() {
  for (;;) {
    Item item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      has_work_.wait(lock, [this] { return !items_.empty() || stopping_; });
      if (stopping_) return;
      item = std::move(items_.front());
      items_.pop_front();
    }
    has_room_.notify_one();
    std::optional<Failure> failed;
    const bool profiling = profiling_.load(std::memory_order_acquire);
    const Clock::time_point start = profiling ? Clock::now() : Clock::time_point{};
    {
      OpScope scope(backend_, item.op);
      try {
        item.task();
        if (profiling && settle_) settle_();
      } catch (const NativeError& e) {
        failed = Failure{e.backend, e.op, e.code, e.what()};
      } catch (const std::bad_alloc&) {
        failed = Failure{backend_, item.op, "ERR_OUT_OF_MEMORY", item.op + ": out of host memory"};
      } catch (const std::exception& e) {
        failed = Failure{backend_, item.op, "ERR_NATIVE", item.op + ": " + e.what()};
      }
    }
    // Releasing the task here frees buffers whose last user it was, off the JS thread.
    item.task = nullptr;
    if (profiling && profiling_.load(std::memory_order_acquire)) Record(item.op, Clock::now() - start);
    if (failed) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!failure_) failure_ = std::move(failed);
    }
  }
}

}  // namespace cr
