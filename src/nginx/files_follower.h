// FilesFollower: hands the gateways' files in the replicated state (raftnginx/gateway.h) to
// this node's GatewayController, debounced as consul-template does: once the files have been
// quiet for `wait_min`, and at the latest `wait_max` after the first change, so that a burst of
// writes costs nginx one or two reloads.
//
// Thread: one of its own, blocked in the source (at most a second at a time, so that stop()
// returns within about that).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "nginx/controller.h"
#include "raftnginx/gateway.h"

namespace raftnginx::nginx {

class FilesFollower {
 public:
  // Backend::gateway_files.
  using Source = std::function<Result<GatewayFiles>(
      raft::Index after, std::chrono::steady_clock::time_point deadline)>;

  FilesFollower(Source source, GatewayController* controller, std::chrono::milliseconds wait_min,
                std::chrono::milliseconds wait_max);
  ~FilesFollower();
  void stop();

 private:
  void run();

  const Source source_;
  GatewayController* const controller_;
  const std::chrono::milliseconds wait_min_;
  const std::chrono::milliseconds wait_max_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace raftnginx::nginx
