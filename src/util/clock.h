// Clock: where the runtime reads the time, so that tests and the simulator can run the same code
// on a clock of their own. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

namespace raftnginx {

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  // Monotonic time, for timeouts and latencies.
  virtual time_point now() const = 0;
  // Wall-clock time in milliseconds since the Unix epoch, for what is recorded in the log.
  virtual uint64_t wall_ms() const = 0;
  // The process's real clocks.
  static const Clock* real();
};

}  // namespace raftnginx
