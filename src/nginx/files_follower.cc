#include "nginx/files_follower.h"

#include <spdlog/spdlog.h>

#include <optional>

namespace raftnginx::nginx {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

FilesFollower::FilesFollower(Source source, GatewayController* controller,
                             std::chrono::milliseconds wait_min, std::chrono::milliseconds wait_max)
    : source_(std::move(source)),
      controller_(controller),
      wait_min_(wait_min),
      wait_max_(wait_max) {
  thread_ = std::thread([this] { run(); });
}

FilesFollower::~FilesFollower() {
  stop();
}

void FilesFollower::stop() {
  stopping_ = true;
  if (thread_.joinable())
    thread_.join();
}

void FilesFollower::run() {
  std::optional<GatewayFiles> handed;  // what the controller has: nothing yet
  raft::Index after = 0;
  while (!stopping_) {
    auto changed = source_(after, Clock::now() + 1s);
    if (!changed.ok()) {
      if (changed.status().code() != Status::Code::kNotFound) {
        spdlog::warn("nginx: cannot read the gateway files: {}", changed.status().message());
        std::this_thread::sleep_for(100ms);  // a busy source: do not spin on it
      }
      continue;
    }
    // The first set goes at once (the gateway starts with it); later ones once quiet.
    GatewayFiles latest = std::move(changed).value();
    if (handed) {
      const auto first = Clock::now();
      while (!stopping_ && latest.files != handed->files) {
        const auto quiet_until = std::min(Clock::now() + wait_min_, first + wait_max_);
        if (Clock::now() >= quiet_until)
          break;
        auto more = source_(latest.index, quiet_until);
        if (!more.ok())
          break;  // quiet (or unreadable) until then
        latest = std::move(more).value();
      }
    }
    // Unchanged files too: the controller then only notes the index they are current at.
    after = latest.index;
    handed = latest;
    controller_->update_files(std::move(latest));
  }
}

}  // namespace raftnginx::nginx
