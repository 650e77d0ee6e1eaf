// Pace: keeps a background reader (the scrubber) to about a rate, so that it never competes
// with the work the node is there for, and lets its owner call it off at once. A Pace is used
// by one thread; its Cancel may be set from any.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace raftnginx {

// A flag that wakes whoever waits on it: how a background pass is told to stop. Thread-safe.
class Cancel {
 public:
  void cancel();
  bool cancelled() const;
  // Waits until `deadline` or until cancelled; true if cancelled.
  bool wait_until(std::chrono::steady_clock::time_point deadline) const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool cancelled_ = false;
};

class Pace {
 public:
  Pace(uint64_t bytes_per_second, const Cancel* cancel = nullptr);
  // `bytes` more were read: waits, once a megabyte has gathered, until they are due. False once
  // the pass is called off: the reader stops and reaches no verdict.
  bool consumed(uint64_t bytes);

 private:
  const uint64_t rate_;
  const Cancel* cancel_;
  const std::chrono::steady_clock::time_point began_;
  uint64_t total_ = 0;
  uint64_t paused_at_ = 0;
};

}  // namespace raftnginx
