#include "raftnginx/pace.h"

#include <algorithm>
#include <thread>

namespace raftnginx {

void Cancel::cancel() {
  {
    std::lock_guard lock(mu_);
    cancelled_ = true;
  }
  cv_.notify_all();
}

bool Cancel::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

bool Cancel::wait_until(std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [this] { return cancelled_; });
}

Pace::Pace(uint64_t bytes_per_second, const Cancel* cancel)
    : rate_(std::max<uint64_t>(bytes_per_second, 1)),
      cancel_(cancel),
      began_(std::chrono::steady_clock::now()) {}

bool Pace::consumed(uint64_t bytes) {
  total_ += bytes;
  if (total_ - paused_at_ < (1 << 20))
    return cancel_ == nullptr || !cancel_->cancelled();
  paused_at_ = total_;
  const auto due = began_ + std::chrono::microseconds(total_ * 1000000 / rate_);
  if (cancel_ != nullptr)
    return !cancel_->wait_until(due);
  std::this_thread::sleep_until(due);  // pacing, not waiting for anything: the rate is the point
  return true;
}

}  // namespace raftnginx
