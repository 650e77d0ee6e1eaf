#include "nginx/controller.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "net/address.h"

namespace raftnginx::nginx {

using namespace std::chrono_literals;

namespace {

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

}  // namespace

GatewayController::GatewayController(std::unique_ptr<Gateway> gateway, GatewayConf conf,
                                     Probe probe)
    : gateway_(std::move(gateway)), probe_(std::move(probe)), conf_(std::move(conf)) {
  conf_.members = sorted(std::move(conf_.members));
  thread_ = std::thread([this] { run(); });
}

GatewayController::~GatewayController() {
  stop(5s);
}

void GatewayController::update(GatewayTarget target) {
  {
    std::lock_guard lock(mu_);
    pending_ = std::move(target);
    has_pending_ = true;
  }
  cv_.notify_all();
}

void GatewayController::reload() {
  {
    std::lock_guard lock(mu_);
    reload_asked_ = true;
  }
  cv_.notify_all();
}

bool GatewayController::serves(std::vector<std::string> members) {
  members = sorted(std::move(members));
  std::lock_guard lock(mu_);
  return confirmed_ == conf_.generation && members == conf_.members;
}

void GatewayController::run() {
  // Until nginx is seen serving the latest generation, it is probed again after `backoff`.
  auto backoff = 5ms;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (has_pending_ || reload_asked_) {
      GatewayTarget target = has_pending_ ? std::move(pending_) : GatewayTarget{conf_.members, {}};
      const bool forced = reload_asked_;
      has_pending_ = false;
      reload_asked_ = false;
      target.members = sorted(std::move(target.members));
      const bool new_leader = !target.leader.empty() && target.leader != conf_.leader;
      if (target.members != conf_.members || new_leader || forced) {
        GatewayConf next = conf_;
        next.members = std::move(target.members);
        if (new_leader)
          next.leader = target.leader;
        ++next.generation;
        lock.unlock();
        Status s = gateway_->reload(next);
        lock.lock();
        if (s.ok()) {
          conf_ = std::move(next);
          backoff = 5ms;
        } else {
          spdlog::error("nginx: not reloaded: {}", s.message());
        }
      }
    }
    if (confirmed_ == conf_.generation) {
      cv_.wait(lock, [this] { return stopping_ || has_pending_ || reload_asked_; });
      continue;
    }
    const uint64_t generation = conf_.generation;
    lock.unlock();
    auto served = probe_(net::local_address(conf_.listen), kGenerationPath);
    lock.lock();
    uint64_t value = 0;
    if (served.ok() &&
        std::from_chars(served->data(), served->data() + served->size(), value).ec == std::errc() &&
        value == generation) {
      confirmed_ = value;
      continue;
    }
    cv_.wait_for(lock, backoff, [this] { return stopping_ || has_pending_ || reload_asked_; });
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 500ms);
  }
}

void GatewayController::stop(std::chrono::milliseconds timeout) {
  {
    std::lock_guard lock(mu_);
    if (stopping_)
      return;
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  gateway_->stop(timeout);
}

}  // namespace raftnginx::nginx
