// Gateway: the nginx process in front of this node, run by the daemon. It writes the conf
// (conf.h) under its prefix, starts nginx in the foreground as a child process, reloads it with
// a new conf (SIGHUP, as `nginx -s reload` does), and stops it gracefully (SIGQUIT).
//
// nginx is told to quit if the thread that called start() ends (PR_SET_PDEATHSIG), even by
// kill -9 of the daemon: call start() from a thread that lives as long as the daemon. A thread
// of the Gateway's own waits for nginx to exit and reports an exit nobody asked for.
//
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "nginx/conf.h"
#include "raftnginx/status.h"

namespace raftnginx::nginx {

class Gateway {
 public:
  // Writes `conf` and starts `binary` (an nginx); returns once nginx runs and takes signals, or
  // fails if it exits first (with the reason from its error log) or takes over kStartDeadline.
  // `on_exit` runs (on the Gateway's thread) if nginx exits without stop().
  static Result<std::unique_ptr<Gateway>> start(const std::string& binary, const GatewayConf& conf,
                                                std::function<void(std::string why)> on_exit);
  ~Gateway();

  static constexpr std::chrono::seconds kStartDeadline{30};

  // Writes `conf` and tells nginx to reload it; nginx serves it once its new workers run (the
  // caller sees that at kGenerationPath).
  Status reload(const GatewayConf& conf);
  // Graceful stop: nginx finishes the requests in flight; killed after `timeout`.
  void stop(std::chrono::milliseconds timeout);
  // The last line of nginx's error log: why a start or a reload failed.
  std::string error_log_tail() const;
  // nginx's workers that still take new connections: after a reload, the new ones, and old ones
  // until they have seen the master's order to finish (they then call themselves "shutting
  // down"). A reload has taken effect for every new connection once this is the conf's count.
  size_t accepting_workers() const;

 private:
  Gateway(std::string prefix, std::function<void(std::string)> on_exit)
      : prefix_(std::move(prefix)), on_exit_(std::move(on_exit)) {}
  Status write_conf(const GatewayConf& conf);
  void wait_for_exit();

  const std::string prefix_;
  const std::function<void(std::string)> on_exit_;
  mutable std::mutex mu_;
  std::condition_variable exited_cv_;
  pid_t pid_ = -1;
  bool started_ = false;  // start() returned it
  bool exited_ = false;
  bool stopping_ = false;
  std::thread waiter_;
};

}  // namespace raftnginx::nginx
