#include "cli/daemon.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "fsm/memory_kv.h"
#include "fsm/rocksdb_kv.h"
#include "http/api.h"
#include "http/client.h"
#include "http/server.h"
#include "nginx/gateway.h"
#include "node/node.h"
#include "transport/member.h"
#include "transport/tcp_transport.h"

namespace raftnginx::cli {

namespace {

using namespace std::chrono_literals;

// The state a node would start from exists: a non-empty log or a snapshot. Mirrors the check
// Node makes before it bootstraps, so that a restarted node never waits for bootstrap peers.
bool has_state(const std::string& data_dir, const std::string& log_dir) {
  std::error_code ec;
  for (const std::string& dir : {log_dir, data_dir + "/snapshots"}) {
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.is_regular_file(ec) ? entry.file_size(ec) > 0 : entry.is_directory(ec))
        return true;
    }
  }
  return false;
}

// Sets up spdlog: one line per event, with the time, level and this node's name.
void setup_logging(const DaemonOptions& options) {
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l node=" + options.id + " %v");
  spdlog::set_level(spdlog::level::from_str(options.log_level));
}

// Why the daemon stops: SIGTERM or SIGINT (taken on a thread of its own; every other thread
// blocks them), or a part of the daemon that cannot go on (its nginx died).
class StopSignal {
 public:
  StopSignal() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGTERM);
    sigaddset(&signals_, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);  // threads started later inherit the mask
    std::thread([this] {
      int number = 0;
      sigwait(&signals_, &number);
      stop(0, std::string("received ") + strsignal(number));
    }).detach();  // blocked in sigwait until the process exits
  }
  const std::atomic<bool>* stopping() const { return &stopping_; }
  void stop(int exit_code, std::string why) {
    {
      std::lock_guard lock(mu_);
      if (stopping_)
        return;
      exit_code_ = exit_code;
      why_ = std::move(why);
    }
    stopping_ = true;
    cv_.notify_all();
  }
  // Waits for a stop; returns the exit code and the reason.
  std::pair<int, std::string> wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return stopping_.load(); });
    return {exit_code_, why_};
  }

 private:
  sigset_t signals_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int exit_code_ = 0;
  std::string why_;
};

// The HTTP addresses of the members, which nginx may forward writes to.
std::vector<std::string> member_http_addresses(const node::NodeStatus& st) {
  std::vector<std::string> out;
  for (const auto& [id, context] : st.member_contexts) {
    std::string http = transport::parse_member(context).http_address;
    if (!http.empty())
      out.push_back(std::move(http));
  }
  return out;
}

// Logs what an operator wants to see change: role, leader, term, membership, snapshots.
class StatusWatcher {
 public:
  // `writes_to_leader`: nginx sends writes straight to the leader (not with the reject policy,
  // where a follower must refuse them).
  StatusWatcher(node::Node* node, nginx::Gateway* gateway, bool writes_to_leader,
                http::Client* client, StopSignal* stop)
      : node_(node),
        gateway_(gateway),
        writes_to_leader_(writes_to_leader),
        client_(client),
        stop_(stop),
        thread_([this] { run(); }) {}
  ~StatusWatcher() {
    done_ = true;
    thread_.join();
  }

 private:
  void run() {
    node::NodeStatus last;
    bool first = true;
    while (!done_) {
      const node::NodeStatus st = node_->status();
      const auto name = [&](raft::NodeId id) {
        auto it = st.member_contexts.find(id);
        return it == st.member_contexts.end() ? std::to_string(id)
                                              : transport::parse_member(it->second).name;
      };
      const uint64_t term = st.raft.hard_state.term;
      if (first || st.raft.role != last.raft.role || st.raft.learner != last.raft.learner) {
        spdlog::info("role {} term={}", node::role_label(st.raft), term);
      }
      if (!first && st.raft.leader != last.raft.leader) {
        if (st.raft.leader == raft::kNoNode) {
          spdlog::warn("leader lost term={}", term);
        } else {
          spdlog::info("leader {} term={}", name(st.raft.leader), term);
        }
      }
      if (st.raft.conf != last.raft.conf) {
        std::string members;
        for (raft::NodeId id : st.raft.conf.voters)
          members += (members.empty() ? "" : ",") + name(id);
        for (raft::NodeId id : st.raft.conf.learners)
          members += (members.empty() ? "" : ",") + name(id) + "(learner)";
        spdlog::info("members [{}] term={}", members, term);
      }
      if (gateway_ != nullptr)
        sync_gateway(st);
      if (st.snapshots_taken != last.snapshots_taken)
        spdlog::info("snapshot taken at index {} term={}", st.snapshot_index, term);
      if (st.snapshots_installed != last.snapshots_installed)
        spdlog::info("snapshot installed at index {} term={}", st.snapshot_index, term);
      if (!st.failure.ok() && last.failure.ok())
        spdlog::error("node stopped taking writes: {}", st.failure.to_string());
      last = st;
      first = false;
      std::this_thread::sleep_for(100ms);
    }
  }

  // Gives nginx the current members and leader, and confirms when it serves them.
  void sync_gateway(const node::NodeStatus& st) {
    if (!gateway_->running())
      return stop_->stop(1, "nginx exited");
    std::string leader;
    if (auto it = st.member_contexts.find(st.raft.leader);
        writes_to_leader_ && it != st.member_contexts.end()) {
      leader = transport::parse_member(it->second).http_address;
    }
    if (Status s = gateway_->update(member_http_addresses(st), leader); !s.ok())
      spdlog::error("nginx: {}", s.message());
    if (gateway_->serves(member_http_addresses(st)))
      return;
    http::Request probe;
    probe.method = "GET";
    probe.target = nginx::kGenerationPath;
    auto r = client_->fetch(gateway_->probe_address(), std::move(probe), 500ms);
    uint64_t served = 0;
    if (r.ok() && r->status == 200 &&
        std::from_chars(r->body.data(), r->body.data() + r->body.size(), served).ec ==
            std::errc()) {
      gateway_->confirm(served);
    }
  }

  node::Node* node_;
  nginx::Gateway* gateway_;
  const bool writes_to_leader_;
  http::Client* client_;
  StopSignal* stop_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Asks the cluster at `address` to add this node, following redirects to the leader, until it
// answers 200 or `stop` is set. Idempotent: the leader answers 200 for a member it knows.
void join_cluster(http::Client* client, const DaemonOptions& options,
                  const std::atomic<bool>* stop) {
  const std::string body = nlohmann::json{
      {"id", options.id},
      {"addr", options.raft_advertise},
      {"http_addr", options.http_advertise},
      {"voter",
       !options.learner}}.dump();
  auto backoff = 200ms;
  std::string target = options.join;
  for (int attempt = 1; !*stop; ++attempt) {
    http::Request request;
    request.method = "POST";
    request.target = "/join";
    request.headers.emplace_back("Content-Type", "application/json");
    request.body = body;
    auto r = client->fetch(target, std::move(request), 5s);
    if (r.ok() && r->status == 200) {
      spdlog::info("joined the cluster through {}", target);
      return;
    }
    if (r.ok() && r->status == 307 && !r->header("X-Raft-Leader").empty() &&
        r->header("X-Raft-Leader") != target) {
      target = std::string(r->header("X-Raft-Leader"));
      continue;  // ask the leader right away
    }
    const std::string why =
        r.ok() ? "HTTP " + std::to_string(r->status) + " " + r->body : r.status().message();
    spdlog::warn("join through {} failed (attempt {}): {}; retrying in {} ms", target, attempt, why,
                 backoff.count());
    target = options.join;
    for (auto waited = 0ms; waited < backoff && !*stop; waited += 50ms)
      std::this_thread::sleep_for(50ms);
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5s);
  }
}

// bootstrap_expect: waits until every listed peer's HTTP port accepts connections.
bool wait_for_peers(http::Client* client, const DaemonOptions& options,
                    const std::atomic<bool>* stop) {
  for (int round = 0; !*stop; ++round) {
    size_t up = 1;  // this node
    for (const Peer& peer : options.peers) {
      if (peer.id == options.id)
        continue;
      http::Request probe;
      probe.method = "GET";
      probe.target = "/healthz";
      auto r = client->fetch(peer.http_address, std::move(probe), 1s);
      // A peer that accepts the connection is up, even though it does not answer before the
      // cluster forms; only a refused or unresolvable address means down.
      if (r.ok() || !r.status().message().starts_with("cannot"))
        ++up;
    }
    if (up >= options.bootstrap_expect) {
      spdlog::info("{} of {} expected nodes are up: forming the cluster", up,
                   options.bootstrap_expect);
      return true;
    }
    if (round % 10 == 0) {
      spdlog::info("waiting for nodes to form the cluster: {} of {} up", up,
                   options.bootstrap_expect);
    }
    std::this_thread::sleep_for(500ms);
  }
  return false;
}

}  // namespace

int run_daemon(const DaemonOptions& given) {
  DaemonOptions options = given;
  setup_logging(options);
  static StopSignal stop_signal;  // static: its detached thread may outlive this function

  std::string inmem_dir;
  if (options.inmem) {
    const std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string pattern = base + "/raft-nginx-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      spdlog::critical("cannot create an in-memory directory under {}", base);
      return 1;
    }
    inmem_dir = pattern;
    options.data_dir = inmem_dir;
    options.fsm = "memory";
  }
  // Absolute, so that nginx's prefix and the logs name the same place whatever the cwd.
  options.data_dir = std::filesystem::absolute(options.data_dir).lexically_normal().string();
  const std::string log_dir =
      options.log_dir.empty()
          ? options.data_dir + "/log"
          : std::filesystem::absolute(options.log_dir).lexically_normal().string();
  auto cleanup = [&] {
    if (!inmem_dir.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(inmem_dir, ec);
    }
  };
  // Start-up failed: says why, and leaves nothing behind.
  auto give_up = [&](const std::string& why) {
    spdlog::critical("{}", why);
    cleanup();
    return 1;
  };

  http::ServerOptions server_options;
  server_options.listen = options.http_bind;
  server_options.max_body = options.max_body;
  server_options.max_connections = options.max_connections;
  server_options.read_timeout = options.http_read_timeout;
  auto server = http::Server::listen(server_options);
  if (!server.ok()) {
    return give_up(server.status().message());
  }

  transport::TcpTransportOptions transport_options;
  transport_options.listen = options.raft_bind;
  transport_options.advertise = options.raft_advertise;
  transport_options.cluster_id = options.cluster_name;
  auto transport = transport::TcpTransport::start(transport_options);
  if (!transport.ok()) {
    return give_up(transport.status().message());
  }

  http::Client client;
  const transport::Member self{options.id, options.raft_advertise, options.http_advertise};
  const raft::NodeId self_id = transport::node_id_for(options.id);

  node::NodeOptions node_options;
  node_options.id = self_id;
  node_options.data_dir = options.data_dir;
  node_options.log_dir = log_dir;
  node_options.tick = std::min(options.heartbeat_timeout, options.election_timeout / 10);
  node_options.election_ticks = static_cast<int>(options.election_timeout / node_options.tick);
  node_options.heartbeat_ticks =
      std::max(1, static_cast<int>(options.heartbeat_timeout / node_options.tick));
  node_options.snapshot_threshold = options.snapshot_threshold;
  node_options.snapshot_interval =
      std::chrono::duration_cast<std::chrono::seconds>(options.snapshot_interval);
  node_options.trailing_logs = options.trailing_logs;
  node_options.retain_snapshots = options.snapshot_retain;
  const bool fresh = !has_state(options.data_dir, log_dir);
  if (options.bootstrap_expect > 0) {
    if (fresh) {
      if (!wait_for_peers(&client, options, stop_signal.stopping())) {
        cleanup();
        return 0;
      }
      raft::ConfState conf;
      for (const Peer& peer : options.peers) {
        const raft::NodeId id = transport::node_id_for(peer.id);
        conf.voters.insert(id);
        node_options.bootstrap_contexts[id] =
            transport::encode_member({peer.id, peer.raft_address, peer.http_address});
      }
      node_options.bootstrap = conf;
    }
  } else if (options.join.empty()) {
    node_options.bootstrap = raft::ConfState{{self_id}, {}};
    node_options.bootstrap_contexts[self_id] = transport::encode_member(self);
  }

  std::error_code dir_error;
  std::filesystem::create_directories(options.data_dir, dir_error);
  if (dir_error) {
    return give_up("cannot create the data directory " + options.data_dir + ": " +
                   dir_error.message());
  }
  std::unique_ptr<fsm::KvStore> kv;
  if (options.fsm == "memory") {
    kv = std::make_unique<fsm::MemoryKv>();
  } else {
    auto rocks = fsm::RocksDbKv::open(options.data_dir + "/fsm");
    if (!rocks.ok()) {
      return give_up("cannot open the rocksdb backend: " + rocks.status().to_string());
    }
    kv = std::move(rocks).value();
  }
  const fsm::KvStore* kv_view = kv.get();
  auto node = node::Node::start(node_options, std::move(kv), transport->get());
  if (!node.ok()) {
    return give_up("cannot start the node: " + node.status().to_string());
  }
  spdlog::info(
      "started: http={} raft={} backend={} data={} {}", options.http_advertise,
      options.raft_advertise, options.fsm, options.data_dir,
      fresh ? (node_options.bootstrap ? "new cluster" : "waiting to join") : "resuming from disk");

  std::unique_ptr<nginx::Gateway> gateway;
  if (!options.nginx_listen.empty()) {
    nginx::GatewayConf conf;
    conf.node_name = options.id;
    conf.prefix = options.data_dir + "/nginx";
    conf.listen = options.nginx_listen;
    conf.local_daemon = nginx::local_address(options.http_bind);
    conf.members = member_http_addresses((*node)->status());
    conf.max_body = options.max_body;
    conf.run_as_root = geteuid() == 0;
    auto started = nginx::Gateway::start(options.nginx_binary, std::move(conf));
    if (started.ok()) {
      gateway = std::move(started).value();
      spdlog::info("nginx serves {} (prefix {}/nginx)", options.nginx_listen, options.data_dir);
    } else {
      stop_signal.stop(1, "cannot run nginx: " + started.status().message());
    }
  }
  http::ApiOptions api_options;
  api_options.self_name = options.id;
  api_options.write_policy = options.write_policy;
  api_options.write_timeout = options.write_timeout;
  if (gateway) {
    api_options.readiness = [g = gateway.get(), n = node->get()] {
      return g->serves(member_http_addresses(n->status()))
                 ? Status()
                 : Status::unavailable("nginx is loading the members");
    };
  }
  http::Api api(api_options, node->get(), kv_view, server->get(), &client);
  (*server)->serve([&api](http::Request request, http::Respond respond) {
    api.handle(std::move(request), std::move(respond));
  });
  std::thread joiner;
  if (!options.join.empty())
    joiner = std::thread([&] { join_cluster(&client, options, stop_signal.stopping()); });

  StatusWatcher watcher((*node).get(), gateway.get(),
                        options.write_policy != http::WritePolicy::kReject, &client, &stop_signal);

  const auto [exit_code, why] = stop_signal.wait();
  if (exit_code == 0) {
    spdlog::info("{}: handing over and stopping", why);
  } else {
    spdlog::critical("{}: stopping", why);
  }
  if (joiner.joinable())
    joiner.join();
  (*node)->shutdown(options.election_timeout * 4);
  (*node)->stop();
  (*server)->stop();
  (*transport)->close(self_id);
  if (gateway)
    gateway->stop(5s);
  spdlog::info("stopped");
  cleanup();
  return exit_code;
}

}  // namespace raftnginx::cli
