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

// Whether `ops` may change a key under nginx/.
bool changes_gateway(const std::vector<KvOp>& ops) {
  for (const KvOp& op : ops) {
    if (op.kind == KvOp::Kind::kGet)
      continue;
    if (under_gateway(op.key) ||
        (op.kind == KvOp::Kind::kDeletePrefix && kGatewayPrefix.starts_with(op.key)))
      return true;
  }
  return false;
}

// Whether `cmd` only takes files away, whichever branch it takes.
bool only_deletes(const fsm::KvCommand& cmd) {
  for (const auto* ops : {&cmd.success, &cmd.failure}) {
    for (const KvOp& op : *ops) {
      if (op.kind == KvOp::Kind::kPut)
        return false;
    }
  }
  return true;
}

// The keys under nginx/ at one index: the files, and kGatewayCheckedKey's record.
struct Namespace {
  GatewayFiles files;
  std::optional<fsm::KvRecord> checked;
};

Result<Namespace> read_namespace(const fsm::KvStore& kv) {
  // Keys that are not files (left by a release before the grammar) are read too, as many
  // again as the files may be; beyond that the gateways cannot take the namespace anyway.
  auto listing = kv.list(kGatewayPrefix, "", 2 * (nginx::kMaxGatewayFiles + 1),
                         2 * nginx::kMaxGatewayBytes, false, Clock::real()->wall_ms());
  if (!listing.ok())
    return listing.status();
  if (listing->truncated) {
    return Status::invalid_argument(
        "the keys under nginx/ are more than the gateways take: delete those that are not "
        "gateway files");
  }
  Namespace ns;
  ns.files.index = listing->index;
  for (auto& [key, record] : listing->entries) {
    std::string path = key.substr(kGatewayPrefix.size());
    if (key == kGatewayCheckedKey)
      ns.checked = std::move(record);
    else if (nginx::check_gateway_path(path).ok())
      ns.files.files.emplace(std::move(path), std::move(record.value));
  }
  return ns;
}

// The file nginx's refusal `why` blames that `ops` take away, if any ("... in server/a.conf:3").
bool takes_away_blamed(const Status& why, const GatewayFiles& before, const GatewayFiles& after) {
  for (const auto& [path, content] : before.files) {
    if (!after.files.contains(path) && why.message().find(" in " + path + ":") != std::string::npos)
      return true;
  }
  return false;
}

// What a follower hands to Exchange::write: the Api sends the request on to the leader, which
// checks it. Should this node have become leader meanwhile, this guard (kGatewayCheckedKey's
// value is never empty) refuses the command, unchecked, at apply time.
fsm::KvCommand unchecked(fsm::KvCommand cmd) {
  cmd.guards = {
      fsm::KvCompare{std::string(kGatewayCheckedKey), fsm::KvCompare::Field::kValue, 0, ""}};
  return cmd;
}

}  // namespace

bool touches_gateway(const fsm::KvCommand& cmd) {
  return changes_gateway(cmd.success) || changes_gateway(cmd.failure);
}

Result<GatewayFiles> read_gateway_files(const fsm::KvStore& kv) {
  auto ns = read_namespace(kv);
  if (!ns.ok())
    return ns.status();
  return std::move(ns->files);
}

fsm::KvOp gateway_revision_bump() {
  return fsm::KvOp{fsm::KvOp::Kind::kPut, std::string(kGatewayCheckedKey), "checked", 0};
}

fsm::KvCommand guard_gateway_write(fsm::KvCommand cmd, raft::Index checked) {
  cmd.guards = {fsm::KvCompare{std::string(kGatewayCheckedKey), fsm::KvCompare::Field::kModIndex,
                               checked, ""}};
  for (auto* ops : {&cmd.success, &cmd.failure}) {
    if (changes_gateway(*ops))
      ops->push_back(gateway_revision_bump());
  }
  return cmd;
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
  if (ex->replica().replica_status().role != "leader")
    return ex->write(fsm::encode_kv_command(unchecked(std::move(cmd))), std::move(answer));
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

std::variant<fsm::KvCommand, http::Response> GatewayWrites::prepare(const Job& job) const {
  const fsm::KvCommand& cmd = job.cmd;
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
  auto current = read_namespace(*kv_);
  if (!current.ok()) {
    // Too many keys: the gateways refuse them all already, and deletes are the way out.
    auto checked = kv_->get(kGatewayCheckedKey);
    if (current.status().code() == Status::Code::kInvalidArgument && only_deletes(cmd) &&
        checked.ok())
      return guard_gateway_write(cmd, *checked ? (*checked)->mod_index : 0);
    return http::Response::error(503,
                                 "cannot read the gateway files: " + current.status().message());
  }
  const raft::Index revision = current->checked ? current->checked->mod_index : 0;
  // Whichever branch the compares choose, nginx must take what it leaves.
  for (const auto* ops : {&cmd.success, &cmd.failure}) {
    GatewayFiles candidate = current->files;
    if (!apply_ops(*ops, &candidate))
      continue;
    Status s = nginx::check_gateway_files(candidate);
    const bool grammar = !s.ok();
    if (s.ok())
      s = check_->check(candidate);
    if (s.ok())
      continue;
    if (s.code() != Status::Code::kInvalidArgument)
      return http::Response::error(503, "cannot check the result with nginx: " + s.message());
    // Files refused already stay refused (every gateway keeps its last good set): a delete
    // cannot make that worse, and must stay possible. Refused by the grammar (the same on
    // every node): any delete; by this node's nginx (which may be alone in refusing them, a name
    // that only it cannot resolve): one that takes away the file nginx blames.
    if (only_deletes(cmd)) {
      if (!nginx::check_gateway_files(current->files).ok())
        continue;
      if (!grammar) {
        const Status now = check_->check(current->files);
        if (!now.ok() && takes_away_blamed(now, current->files, candidate))
          continue;
      }
    }
    spdlog::info("a write under nginx/ is refused: {}", s.message());
    return http::Response::error(
        422,
        (grammar ? "the gateway files are refused: " : "nginx refuses the result: ") + s.message());
  }
  return guard_gateway_write(cmd, revision);
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
    auto prepared = prepare(job);
    if (auto* refused = std::get_if<http::Response>(&prepared)) {
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
    job.ex->write(fsm::encode_kv_command(std::get<fsm::KvCommand>(prepared)),
                  [release, answer = std::move(job.answer)](const Outcome& outcome) {
                    return answer(outcome);
                  });
  }
}

}  // namespace raftnginx::kv
