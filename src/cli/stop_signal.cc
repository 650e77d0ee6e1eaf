#include "cli/stop_signal.h"

#include <signal.h>

#include <cstring>
#include <thread>

namespace raftnginx::cli {

StopSignal::StopSignal() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // threads started later inherit the mask
  std::thread([this, signals] {
    for (;;) {
      int number = 0;
      sigwait(&signals, &number);
      if (number != SIGHUP) {
        stop(0, std::string("received ") + strsignal(number));
        continue;
      }
      std::function<void()> reload;
      {
        std::lock_guard lock(mu_);
        reload = reload_;
      }
      if (reload)
        reload();
    }
  }).detach();  // blocked in sigwait until the process exits
}

void StopSignal::on_reload(std::function<void()> reload) {
  std::lock_guard lock(mu_);
  reload_ = std::move(reload);
}

void StopSignal::stop(int exit_code, std::string why) {
  {
    std::lock_guard lock(mu_);
    if (stopping_)
      return;
    exit_code_ = exit_code;
    why_ = std::move(why);
    stopping_ = true;
  }
  cv_.notify_all();
}

bool StopSignal::wait_for(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return stopping_.load(); });
}

std::pair<int, std::string> StopSignal::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return stopping_.load(); });
  return {exit_code_, why_};
}

}  // namespace raftnginx::cli
