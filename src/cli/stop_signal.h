// StopSignal: why the daemon stops: SIGTERM or SIGINT (taken on a thread of its own; every other
// thread blocks them), or a part of the daemon that cannot go on (its nginx died). Construct it
// before starting any thread, so that they all inherit the blocked signals. Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <utility>

namespace raftnginx::cli {

class StopSignal {
 public:
  StopSignal();
  const std::atomic<bool>* stopping() const { return &stopping_; }
  // The first call decides the exit code and the reason; later ones are ignored.
  void stop(int exit_code, std::string why);
  // Waits for a stop; returns the exit code and the reason.
  std::pair<int, std::string> wait();

 private:
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int exit_code_ = 0;
  std::string why_;
};

}  // namespace raftnginx::cli
