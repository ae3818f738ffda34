#include "completions.h"

#include <utility>

namespace cr {

Completions::~Completions() { Stop(); }

void Completions::Run(std::function<void()> work, bool waits) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!stopping_ && (waits || pending_ > 0)) {
      ++pending_;
      items_.push_back(std::move(work));
      if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
      lock.unlock();
      has_work_.notify_one();
      return;
    }
  }
  work();
}

void Completions::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  has_work_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Completions::Loop() {
  for (;;) {
    std::function<void()> work;
    {
      std::unique_lock<std::mutex> lock(mu_);
      has_work_.wait(lock, [this] { return !items_.empty() || stopping_; });
      // Stopping still runs what is queued: each item releases a readback's promise and waits
      // only for work that was launched already.
      if (items_.empty()) return;
      work = std::move(items_.front());
      items_.pop_front();
    }
    work();
    work = nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    --pending_;
  }
}

}  // namespace cr
