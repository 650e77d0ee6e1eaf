#include "kv/gateway_files.h"

#include <spdlog/spdlog.h>

#include <future>
#include <thread>

#include "fsm/kv_command.h"
#include "nginx/config_files.h"
#include "util/clock.h"

namespace raftnginx::kv {

using fsm::KvOp;

namespace {

// How many checked writes may wait for their turn.
constexpr size_t kMaxWaitingWrites = 64;

bool under_gateway(std::string_view key) {
  return key.starts_with(kGatewayPrefix);
}

// The files `ops` would leave, from `files` (paths, not keys); false if they change none.
bool apply_ops(const std::vector<KvOp>& ops, GatewayFiles* files) {
  bool changed = false;
  for (const KvOp& op : ops) {
    switch (op.kind) {
      case KvOp::Kind::kPut:
        if (under_gateway(op.key)) {
          files->files[op.key.substr(kGatewayPrefix.size())] = op.value;
          changed = true;
        }
        break;
      case KvOp::Kind::kDelete:
      case KvOp::Kind::kExpire:
        if (under_gateway(op.key)) {
          files->files.erase(op.key.substr(kGatewayPrefix.size()));
          changed = true;
        }
        break;
      case KvOp::Kind::kDeletePrefix:
        // Within nginx/ only (refusal() sees to it): at most kMaxGatewayFiles keys, all removed.
        for (auto it = files->files.begin(); it != files->files.end();) {
          if ((std::string(kGatewayPrefix) + it->first).starts_with(op.key)) {
            it = files->files.erase(it);
            changed = true;
          } else {
            ++it;
          }
        }
        break;
      case KvOp::Kind::kGet:
        break;
    }
  }
  return changed;
}

}  // namespace

bool touches_gateway(const fsm::KvCommand& cmd) {
  for (const auto* ops : {&cmd.success, &cmd.failure}) {
    for (const KvOp& op : *ops) {
      if (op.kind == KvOp::Kind::kGet)
        continue;
      if (under_gateway(op.key) ||
          (op.kind == KvOp::Kind::kDeletePrefix && kGatewayPrefix.starts_with(op.key)))
        return true;
    }
  }
  return false;
}

Result<GatewayFiles> read_gateway_files(const fsm::KvStore& kv) {
  auto listing = kv.list(kGatewayPrefix, "", nginx::kMaxGatewayFiles + 1,
                         2 * nginx::kMaxGatewayBytes, false, Clock::real()->wall_ms());
  if (!listing.ok())
    return listing.status();
  if (listing->truncated)
    return Status::invalid_argument("the keys under nginx/ are more than the gateways take");
  GatewayFiles files;
  files.index = listing->index;
  for (auto& [key, record] : listing->entries) {
    std::string path = key.substr(kGatewayPrefix.size());
    if (nginx::check_gateway_path(path).ok())
      files.files.emplace(std::move(path), std::move(record.value));
  }
  return files;
}

decltype(Backend::gateway_files) gateway_files_source(const fsm::KvStore* kv,
                                                      std::shared_ptr<WatchHub> hub) {
  return [kv, hub](raft::Index after,
                   std::chrono::steady_clock::time_point deadline) -> Result<GatewayFiles> {
    if (after != 0) {
      auto woken = std::make_shared<std::promise<void>>();
      std::future<void> changed = woken->get_future();
      Status s = hub->wait(std::string(kGatewayPrefix), false, after, deadline,
                           [woken] { woken->set_value(); });
      if (s.code() == Status::Code::kBusy) {
        // Readers hold every waiting place: look again at the deadline, whatever changed.
        std::this_thread::sleep_until(deadline);
        return read_gateway_files(*kv);
      }
      if (!s.ok())
        return s;
      changed.wait();
      if (std::chrono::steady_clock::now() >= deadline)
        return Status::not_found("the gateway files did not change");
    }
    return read_gateway_files(*kv);
  };
}

GatewayWrites::GatewayWrites(const fsm::KvStore* kv, std::shared_ptr<const GatewayCheck> check)
    : kv_(kv), check_(std::move(check)) {
  thread_ = std::thread([this] { run(); });
}

GatewayWrites::~GatewayWrites() {
  stop();
}

void GatewayWrites::stop() {
  std::deque<Job> left;
  {
    std::lock_guard lock(mu_);
    if (stopping_)
      return;
    stopping_ = true;
    left.swap(jobs_);
  }
  cv_.notify_all();
  thread_.join();
  for (Job& job : left)
    job.ex->respond(http::Response::error(503, "the node is stopping"));
}

void GatewayWrites::write(ExchangePtr ex, fsm::KvCommand cmd, Answer answer) {
  {
    std::lock_guard lock(mu_);
    if (jobs_.size() < kMaxWaitingWrites) {
      jobs_.push_back(Job{std::move(ex), std::move(cmd), std::move(answer)});
      cv_.notify_all();
      return;
    }
  }
  http::Response busy = http::Response::error(
      503, "too many writes to nginx/ wait for their check on this node; retry shortly");
  busy.headers.emplace_back("Retry-After", "1");
  ex->respond(std::move(busy));
}

void GatewayWrites::released() {
  {
    std::lock_guard lock(mu_);
    in_flight_ = false;
  }
  cv_.notify_all();
}

std::optional<http::Response> GatewayWrites::refusal(const fsm::KvCommand& cmd) const {
  for (const auto* ops : {&cmd.success, &cmd.failure}) {
    for (const KvOp& op : *ops) {
      // One op removes at most fsm::kMaxDeletePrefixKeys: a wider prefix could take some files
      // and leave the others, a set nobody checked.
      if (op.kind == KvOp::Kind::kDeletePrefix && kGatewayPrefix.starts_with(op.key) &&
          op.key != kGatewayPrefix)
        return http::Response::error(
            400, "a delete_prefix that takes in nginx/ must be under it: delete nginx/ first");
      if (op.kind != KvOp::Kind::kPut || !under_gateway(op.key))
        continue;
      if (Status s = nginx::check_gateway_path(op.key.substr(kGatewayPrefix.size())); !s.ok())
        return http::Response::error(400, op.key.substr(0, 80) + ": " + s.message());
      if (op.number != 0)
        return http::Response::error(
            400, op.key + ": a gateway file takes no ttl (its expiry would skip nginx's check)");
    }
  }
  if (check_ == nullptr) {
    return http::Response::error(503,
                                 "this node has no nginx binary to check a change under nginx/ "
                                 "with (--nginx-binary)");
  }
  auto current = read_gateway_files(*kv_);
  if (!current.ok())
    return http::Response::error(503,
                                 "cannot read the gateway files: " + current.status().message());
  // Whichever branch the compares choose, nginx must take what it leaves.
  for (const auto* ops : {&cmd.success, &cmd.failure}) {
    GatewayFiles candidate = *current;
    if (!apply_ops(*ops, &candidate))
      continue;
    if (Status s = nginx::check_gateway_files(candidate); !s.ok())
      return http::Response::error(422, "the gateway files are refused: " + s.message());
    if (Status s = check_->check(candidate); !s.ok()) {
      const int status = s.code() == Status::Code::kInvalidArgument ? 422 : 503;
      spdlog::info("a write under nginx/ is refused: {}", s.message());
      return http::Response::error(status, "nginx refuses the result: " + s.message());
    }
  }
  return std::nullopt;
}

void GatewayWrites::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || (!jobs_.empty() && !in_flight_); });
      if (stopping_)
        return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      in_flight_ = true;
    }
    if (auto refused = refusal(job.cmd)) {
      job.ex->respond(std::move(*refused));
      released();
      continue;
    }
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        job.ex->respond(http::Response::error(503, "the node is stopping"));
        return;
      }
    }
    // The next write to nginx/ waits until this one's outcome is known, or never will be: the
    // answer's callback is dropped either way.
    struct Release {
      std::weak_ptr<GatewayWrites> writes;
      ~Release() {
        if (auto w = writes.lock())
          w->released();
      }
    };
    auto release = std::make_shared<Release>(Release{weak_from_this()});
    job.ex->write(fsm::encode_kv_command(job.cmd),
                  [release, answer = std::move(job.answer)](const Outcome& outcome) {
                    return answer(outcome);
                  });
  }
}

}  // namespace raftnginx::kv
