#include "http/replica_check.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <nlohmann/json.hpp>

namespace raftnginx::http {

using Clock = std::chrono::steady_clock;

namespace {
constexpr auto kVerifySpacing = std::chrono::milliseconds(250);
}  // namespace

std::string hash_hex(uint64_t hash) {
  return fmt::format("{:016x}", hash);
}

std::optional<uint64_t> parse_hash_hex(std::string_view text) {
  uint64_t hash = 0;
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, hash, 16);
  if (text.size() != 16 || error != std::errc() || stop != end)
    return std::nullopt;
  return hash;
}

// One comparison: this node's hash at a checkpoint, and the peers' answers as they come.
struct ReplicaCheck::Round {
  std::mutex mu;
  ReplicaVerdict verdict;
  size_t pending = 0;
};

ReplicaCheck::ReplicaCheck(ReplicaCheckOptions options, node::Node* node, Client* client,
                           Server* server)
    : options_(std::move(options)), node_(node), client_(client), server_(server) {}

ReplicaCheck::~ReplicaCheck() {
  std::lock_guard lock(life_->mu);
  life_->alive = false;
}

void ReplicaCheck::start() {
  if (options_.interval.count() > 0)
    server_->after(options_.interval, [this] { tick(); });
}

void ReplicaCheck::tick() {
  if (node_->status().raft.role == raft::Role::kLeader)
    node_->propose_checkpoint([](Result<Outcome>) {});  // a lost one is proposed next time
  server_->after(options_.interval, [this] { tick(); });
}

void ReplicaCheck::on_status(const node::NodeStatus& st) {
  if (!st.checkpoint_hash)
    return;
  auto round = std::make_shared<Round>();
  {
    std::lock_guard lock(mu_);
    if (st.checkpoint_index <= started_)
      return;
    started_ = st.checkpoint_index;
  }
  round->verdict.index = st.checkpoint_index;
  round->verdict.hash = *st.checkpoint_hash;
  round->verdict.voters = st.membership.conf.voters.size();
  std::vector<std::pair<std::string, std::string>> peers;  // name, HTTP address
  for (raft::NodeId id : st.membership.conf.voters) {
    const cluster::Member* m = st.membership.find(id);
    if (id != st.raft.id && m != nullptr && !m->http_address.empty())
      peers.emplace_back(m->name, m->http_address);
  }
  round->pending = peers.size();
  if (peers.empty())
    return conclude(round);
  const auto until = Clock::now() + options_.peer_wait;
  for (const auto& [name, address] : peers)
    ask(round, name, address, until);
}

void ReplicaCheck::ask(const std::shared_ptr<Round>& round, const std::string& name,
                       const std::string& address, Clock::time_point until) {
  Request request;
  request.method = "GET";
  request.target = "/hash?index=" + std::to_string(round->verdict.index);
  if (!options_.authorization.empty())
    request.headers.emplace_back("Authorization", options_.authorization);
  client_->fetch(
      address, std::move(request), std::chrono::milliseconds(2000),
      [this, life = life_, round, name, address, until](Result<Response> r) {
        std::lock_guard alive(life->mu);
        if (!life->alive)
          return;
        std::optional<Result<uint64_t>> answer;
        if (r.ok() && r->status == 200) {
          const auto doc = nlohmann::json::parse(r->body, nullptr, false);
          std::optional<uint64_t> hash;
          if (doc.is_object() && doc.contains("hash") && doc["hash"].is_string())
            hash = parse_hash_hex(doc["hash"].get<std::string>());
          answer = hash ? Result<uint64_t>(*hash)
                        : Result<uint64_t>(
                              Status::invalid_argument("answered something that is not a hash"));
        } else if (r.ok() && r->status == 404) {
          answer = Result<uint64_t>(Status::not_found("no hash at this checkpoint"));
        } else if (Clock::now() >= until) {
          answer = Result<uint64_t>(
              Status::unavailable(r.ok() ? "answered " + std::to_string(r->status)
                                         : "unreachable: " + r.status().message()));
        }
        if (!answer) {  // not there yet: it has not applied the checkpoint
          server_->after(std::chrono::milliseconds(200),
                         [this, round, name, address, until] { ask(round, name, address, until); });
          return;
        }
        bool done = false;
        {
          std::lock_guard lock(round->mu);
          round->verdict.peers.emplace(name, std::move(*answer));
          done = --round->pending == 0;
        }
        if (done)
          conclude(round);
      });
}

void ReplicaCheck::conclude(const std::shared_ptr<Round>& round) {
  ReplicaVerdict& v = round->verdict;
  size_t compared = 0;
  std::map<uint64_t, size_t> holders;  // a hash other voters hold -> how many
  for (const auto& [name, hash] : v.peers) {
    if (!hash.ok())
      continue;
    ++compared;
    ++holders[*hash];
    if (*hash != v.hash)
      v.mismatched.push_back(name);
  }
  std::optional<uint64_t> majority;  // the hash a majority of all voters holds, if not ours
  for (const auto& [hash, count] : holders) {
    if (hash != v.hash && count >= v.voters / 2 + 1)
      majority = hash;
  }
  v.diverged = majority.has_value();
  if (!v.mismatched.empty()) {
    spdlog::error(
        "replica check at index {}: this node's state hash {} differs from {} of {} "
        "peers ({}){}",
        v.index, hash_hex(v.hash), v.mismatched.size(), compared, fmt::join(v.mismatched, ", "),
        v.diverged ? ": this node diverged and serves no reads until repaired "
                     "(raft-nginx repair, see the README)"
                   : ": they diverged");
  }
  std::multimap<raft::Index, std::function<void(Result<ReplicaVerdict>)>> answered;
  {
    std::lock_guard lock(mu_);
    last_ = v;
    if (v.diverged && !diverged_) {
      diverged_ = "this node's state differs from its peers' (replica check at index " +
                  std::to_string(v.index) + "): it serves no reads until repaired";
      has_diverged_ = true;
    }
    auto end = waiting_.upper_bound(v.index);
    answered.insert(waiting_.begin(), end);
    waiting_.erase(waiting_.begin(), end);
  }
  if (v.diverged) {
    // A diverged leader hands over, to a voter that holds the majority's state.
    const node::NodeStatus st = node_->status();
    std::set<raft::NodeId> excluded;
    for (raft::NodeId id : st.membership.conf.voters) {
      const cluster::Member* m = st.membership.find(id);
      const auto answer = m != nullptr ? v.peers.find(m->name) : v.peers.end();
      if (answer == v.peers.end() || !answer->second.ok() || *answer->second != *majority)
        excluded.insert(id);
    }
    const raft::NodeId to = cluster::best_transfer_target(st.raft, excluded);
    if (to != raft::kNoNode)
      node_->transfer_leadership(to, [](Status) {});
  }
  for (auto& [index, done] : answered)
    done(v);
}

void ReplicaCheck::verify_now(std::function<void(Result<ReplicaVerdict>)> done) {
  // Answers with the verdict at `index` or later, once there is one.
  const auto answer_at = [this](raft::Index index,
                                std::function<void(Result<ReplicaVerdict>)> done) {
    std::unique_lock lock(mu_);
    if (last_ && last_->index >= index) {
      ReplicaVerdict v = *last_;
      lock.unlock();
      return done(std::move(v));
    }
    waiting_.emplace(index, std::move(done));
  };
  {
    std::unique_lock lock(mu_);
    const bool in_flight = recent_ && (!last_ || last_->index < recent_->second);
    if (in_flight || (recent_ && Clock::now() - recent_->first < kVerifySpacing)) {
      const raft::Index index = recent_->second;
      lock.unlock();
      return answer_at(index, std::move(done));
    }
  }
  node_->propose_checkpoint([this, answer_at, done = std::move(done)](Result<Outcome> r) mutable {
    if (!r.ok())
      return done(r.status());
    if (!node_->checkpoint_hash(r->index) && !node_->status().checkpoint_hash)
      return done(Status::not_supported("the backend takes no part in replica checks"));
    {
      std::lock_guard lock(mu_);
      recent_.emplace(Clock::now(), r->index);
    }
    answer_at(r->index, std::move(done));
  });
}

std::optional<ReplicaVerdict> ReplicaCheck::last() const {
  std::lock_guard lock(mu_);
  return last_;
}

std::optional<std::string> ReplicaCheck::diverged() const {
  if (!has_diverged_)
    return std::nullopt;
  std::lock_guard lock(mu_);
  return diverged_;
}

}  // namespace raftnginx::http
