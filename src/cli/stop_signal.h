// StopSignal: why the daemon stops: SIGTERM or SIGINT, or a part of the daemon that cannot go on
// (its nginx died); and SIGHUP, which asks it to re-read its certificates and credentials. The
// signals are taken on a thread of its own and every other thread blocks them: construct it
// before starting any thread, so that they all inherit the mask. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
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
  // Waits at most `timeout` for a stop; true if one came.
  bool wait_for(std::chrono::milliseconds timeout);
  // What SIGHUP does (on the signal thread); nothing until set.
  void on_reload(std::function<void()> reload);

 private:
  std::function<void()> reload_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int exit_code_ = 0;
  std::string why_;
};

}  // namespace raftnginx::cli
