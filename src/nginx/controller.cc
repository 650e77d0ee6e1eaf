#include "nginx/controller.h"

#include <spdlog/spdlog.h>

#include <netdb.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <optional>

#include "net/address.h"
#include "nginx/config_files.h"

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
                                     std::string binary, Probe probe)
    : gateway_(std::move(gateway)),
      binary_(std::move(binary)),
      probe_(std::move(probe)),
      conf_(std::move(conf)) {
  conf_.members = sorted(std::move(conf_.members));
  wanted_ = conf_.members;
  // No files from a previous run: nginx serves none, and an empty first set needs no reload.
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(conf_.prefix + "/cluster", ec))) {
    served_files_ = GatewayFiles{};
    confirmed_files_ = served_files_;
  }
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

void GatewayController::update_files(GatewayFiles files) {
  {
    std::lock_guard lock(mu_);
    files_state_.latest_index = std::max(files_state_.latest_index, files.index);
    latest_files_ = files;
    pending_files_ = std::move(files);
    has_files_ = true;
  }
  cv_.notify_all();
}

GatewayConf GatewayController::conf() const {
  std::lock_guard lock(mu_);
  return conf_;
}

GatewayFilesState GatewayController::files_state() const {
  std::lock_guard lock(mu_);
  return files_state_;
}

void GatewayController::take_files(const GatewayConf& conf, const GatewayFiles& files) {
  Status s = test_gateway(binary_, conf, conf.prefix + "/stage", files);
  if (s.ok())
    s = install_gateway_files(conf.prefix, files, conf.generation);
  std::lock_guard lock(mu_);
  if (s.ok()) {
    served_files_ = files;
    installed_ = {files.index, conf.generation};
    // The latest set clears a refusal; a roll back to an older one does not.
    if (!latest_files_ || latest_files_->files == files.files) {
      files_state_.failed_key.clear();
      files_state_.failed_index = 0;
      files_state_.failure.clear();
    }
    spdlog::info("nginx: the gateway files of index {} ({} files) pass nginx -t", files.index,
                 files.files.size());
    return;
  }
  // Which file: the first one nginx's message names.
  std::string key;
  for (const auto& [path, content] : files.files) {
    if (s.message().find(path + ":") != std::string::npos) {
      key = "nginx/" + path;
      break;
    }
  }
  files_state_.failed_key = key;
  files_state_.failed_index = files.index;
  files_state_.failure = s.message();
  refused_files_ = files;
  if (!served_files_) {
    // The first set since start: what a previous run left is no good set to keep. None at all.
    const GatewayFiles none;
    if (install_gateway_files(conf.prefix, none, conf.generation).ok()) {
      served_files_ = none;
      installed_ = {0, conf.generation};
    }
  }
  spdlog::error(
      "nginx: the gateway files of index {} are refused here ({}): {}; serving those "
      "of index {}",
      files.index, key.empty() ? "no single file named" : key, s.message(),
      files_state_.served_index);
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
    if (has_pending_ || reload_asked_ || has_files_) {
      if (reload_asked_ && latest_files_) {
        // SIGHUP: a refused set is tried again (a name may resolve now).
        refused_files_.reset();
        if (!has_files_) {
          pending_files_ = *latest_files_;
          has_files_ = true;
        }
      }
      GatewayTarget target = has_pending_ ? std::move(pending_) : GatewayTarget{wanted_, {}};
      const bool forced = reload_asked_;
      has_pending_ = false;
      reload_asked_ = false;
      std::optional<GatewayFiles> files;
      if (has_files_ && refused_files_ && pending_files_.files == refused_files_->files) {
        // Refused already: nothing to try until the files change.
      } else if (has_files_ && (!served_files_ || pending_files_.files != served_files_->files)) {
        files = std::move(pending_files_);
      } else if (has_files_) {  // the files nginx has already: whatever was refused is gone
        installed_.index = pending_files_.index;
        files_state_ = {files_state_.served_index, files_state_.latest_index, {}, 0, {}};
        if (confirmed_ >= installed_.generation)
          files_state_.served_index = installed_.index;
      }
      has_files_ = false;
      target.members = sorted(std::move(target.members));
      const bool new_leader = !target.leader.empty() && target.leader != conf_.leader;
      if (target.members != wanted_ || new_leader || forced || files) {
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
        // Refused files leave the live ones as they were: the reload still takes the members.
        if (files)
          take_files(next, *files);
        Status s = gateway_->reload(next);
        lock.lock();
        if (s.ok()) {
          conf_ = std::move(next);
          backoff = 5ms;
          reloaded_at_ = std::chrono::steady_clock::now();
          rolled_back_ = false;
        } else {
          // Asked again after a pause: until then the files on disk may be ahead of nginx.
          spdlog::error("nginx: not reloaded: {}", s.message());
          reload_asked_ = true;
          cv_.wait_for(lock, 1s, [this] { return stopping_; });
          continue;
        }
      }
    }
    if (confirmed_ == conf_.generation) {
      cv_.wait(lock, [this] { return stopping_ || has_pending_ || reload_asked_ || has_files_; });
      continue;
    }
    const uint64_t generation = conf_.generation;
    lock.unlock();
    auto served = probe_(net::local_address(conf_.listen), kGenerationPath);
    lock.lock();
    uint64_t value = 0;
    // Served by the new workers, and no old one takes new connections any more.
    if (served.ok() &&
        std::from_chars(served->data(), served->data() + served->size(), value).ec == std::errc() &&
        value == generation && gateway_->accepting_workers() <= kWorkerProcesses) {
      confirmed_ = value;
      if (confirmed_ >= installed_.generation) {
        files_state_.served_index = installed_.index;
        confirmed_files_ = served_files_;
      }
      continue;
    }
    if (!rolled_back_ && !has_files_ &&
        std::chrono::steady_clock::now() - reloaded_at_ > kReloadDeadline) {
      // (Newer files, if any came meanwhile, replace these anyway.)
      rolled_back_ = true;
      spdlog::error("nginx: generation {} is not served {} s after its reload: {}", generation,
                    kReloadDeadline.count(), gateway_->error_log_tail());
      if (served_files_ && confirmed_files_ && served_files_->files != confirmed_files_->files) {
        // The new files are what changed: back to the last set nginx was seen serving.
        refused_files_ = served_files_;
        files_state_.failed_key.clear();
        files_state_.failed_index = served_files_->index;
        files_state_.failure =
            "nginx did not take the reload of these files (this node's log says why); serving "
            "the last files it took";
        pending_files_ = *confirmed_files_;
        has_files_ = true;
        continue;
      }
      // Not the files: the members, or nginx itself. Asked again.
      reload_asked_ = true;
      continue;
    }
    cv_.wait_for(lock, backoff,
                 [this] { return stopping_ || has_pending_ || reload_asked_ || has_files_; });
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
