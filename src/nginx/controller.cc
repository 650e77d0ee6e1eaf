#include "nginx/controller.h"

#include <spdlog/spdlog.h>

#include <netdb.h>

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

std::vector<std::string> resolvable(const std::vector<std::string>& members,
                                    std::vector<std::string>* left_out) {
  std::vector<std::string> out;
  for (const std::string& address : members) {
    auto parsed = net::parse_address(address);
    bool ok = parsed.ok();
    if (ok) {
      addrinfo hints{};
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* found = nullptr;
      ok = getaddrinfo(parsed->host.c_str(), nullptr, &hints, &found) == 0;
      if (found != nullptr)
        freeaddrinfo(found);
    }
    if (ok) {
      out.push_back(address);
    } else if (left_out != nullptr) {
      left_out->push_back(address);
    }
  }
  return out;
}

GatewayController::GatewayController(std::unique_ptr<Gateway> gateway, GatewayConf conf,
                                     Probe probe)
    : gateway_(std::move(gateway)), probe_(std::move(probe)), conf_(std::move(conf)) {
  conf_.members = sorted(std::move(conf_.members));
  wanted_ = conf_.members;
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
  return confirmed_ == conf_.generation && members == wanted_;
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
      if (target.members != wanted_ || new_leader || forced) {
        GatewayConf next = conf_;
        wanted_ = target.members;
        lock.unlock();
        std::vector<std::string> left_out;
        next.members = resolvable(target.members, &left_out);
        for (const std::string& address : left_out)
          spdlog::error("nginx: member address {} does not resolve: left out of the gateway",
                        address);
        lock.lock();
        if (new_leader && std::count(next.members.begin(), next.members.end(), target.leader))
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
