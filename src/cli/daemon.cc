#include "cli/daemon.h"

#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "cli/joining.h"
#include "cli/status_log.h"
#include "cli/stop_signal.h"
#include "fsm/memory_kv.h"
#include "fsm/rocksdb_kv.h"
#include "http/api.h"
#include "http/client.h"
#include "http/server.h"
#include "net/address.h"
#include "nginx/controller.h"
#include "node/node.h"
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

node::NodeOptions node_options_for(const DaemonOptions& options, const std::string& log_dir) {
  node::NodeOptions o;
  o.id = cluster::node_id_for(options.id);
  o.data_dir = options.data_dir;
  o.log_dir = log_dir;
  o.tick = std::min(options.heartbeat_timeout, options.election_timeout / 10);
  o.election_ticks = static_cast<int>(options.election_timeout / o.tick);
  o.heartbeat_ticks = std::max(1, static_cast<int>(options.heartbeat_timeout / o.tick));
  o.snapshot_threshold = options.snapshot_threshold;
  o.snapshot_interval = options.snapshot_interval;
  o.trailing_logs = options.trailing_logs;
  o.retain_snapshots = options.snapshot_retain;
  return o;
}

// The membership a brand-new cluster starts from: this node alone, or a bootstrap_expect
// config's peers.
cluster::Membership initial_members(const DaemonOptions& options) {
  cluster::Membership m;
  if (options.bootstrap_expect == 0) {
    const raft::NodeId self = cluster::node_id_for(options.id);
    m.conf.voters.insert(self);
    m.members[self] = {options.id, options.raft_advertise, options.http_advertise};
    return m;
  }
  for (const Peer& peer : options.peers) {
    const raft::NodeId id = cluster::node_id_for(peer.id);
    m.conf.voters.insert(id);
    m.members[id] = {peer.id, peer.raft_address, peer.http_address};
  }
  return m;
}

Result<std::unique_ptr<fsm::KvStore>> open_backend(const DaemonOptions& options) {
  if (options.fsm == "memory")
    return std::unique_ptr<fsm::KvStore>(std::make_unique<fsm::MemoryKv>());
  auto rocks = fsm::RocksDbKv::open(options.data_dir + "/fsm");
  if (!rocks.ok())
    return Status::io_error("cannot open the rocksdb backend: " + rocks.status().to_string());
  return std::unique_ptr<fsm::KvStore>(std::move(rocks).value());
}

// What nginx should serve as of `st`. With the reject policy writes go to the local daemon,
// which refuses them, so no leader is named.
nginx::GatewayTarget gateway_target(const node::NodeStatus& st, bool writes_to_leader) {
  nginx::GatewayTarget target{st.membership.http_addresses(), {}};
  if (const cluster::Member* leader = st.membership.find(st.raft.leader);
      writes_to_leader && leader != nullptr)
    target.leader = leader->http_address;
  return target;
}

// Starts this node's nginx and its controller; nginx dying stops the daemon.
Result<std::unique_ptr<nginx::GatewayController>> start_gateway(const DaemonOptions& options,
                                                                const node::NodeStatus& st,
                                                                http::Client* client,
                                                                StopSignal* stop) {
  nginx::GatewayConf conf;
  conf.node_name = options.id;
  conf.prefix = options.data_dir + "/nginx";
  conf.listen = options.nginx_listen;
  conf.local_daemon = net::local_address(options.http_bind);
  conf.members = st.membership.http_addresses();
  conf.max_body = options.max_body;
  conf.run_as_root = geteuid() == 0;
  auto gateway = nginx::Gateway::start(options.nginx_binary, conf,
                                       [stop](std::string why) { stop->stop(1, why); });
  if (!gateway.ok())
    return Status::io_error("cannot run nginx: " + gateway.status().message());
  auto probe = [client](const std::string& address,
                        const std::string& path) -> Result<std::string> {
    http::Request request;
    request.method = "GET";
    request.target = path;
    auto r = client->fetch(address, std::move(request), 500ms);
    if (!r.ok())
      return r.status();
    if (r->status != 200)
      return Status::unavailable("HTTP " + std::to_string(r->status));
    return std::move(r->body);
  };
  spdlog::info("nginx serves {} (prefix {})", options.nginx_listen, conf.prefix);
  return std::make_unique<nginx::GatewayController>(std::move(gateway).value(), std::move(conf),
                                                    std::move(probe));
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
  if (!server.ok())
    return give_up(server.status().message());

  transport::TcpTransportOptions transport_options;
  transport_options.listen = options.raft_bind;
  transport_options.advertise = options.raft_advertise;
  transport_options.cluster_id = options.cluster_name;
  auto transport = transport::TcpTransport::start(transport_options);
  if (!transport.ok())
    return give_up(transport.status().message());

  http::Client client;
  node::NodeOptions node_options = node_options_for(options, log_dir);
  const bool fresh = !has_state(options.data_dir, log_dir);
  if (fresh && options.bootstrap_expect > 0) {
    if (!wait_for_peers(&client, options, stop_signal.stopping())) {
      cleanup();
      return 0;
    }
    node_options.bootstrap = initial_members(options);
  } else if (fresh && options.join.empty()) {
    node_options.bootstrap = initial_members(options);
  }

  std::error_code dir_error;
  std::filesystem::create_directories(options.data_dir, dir_error);
  if (dir_error) {
    return give_up("cannot create the data directory " + options.data_dir + ": " +
                   dir_error.message());
  }
  auto kv = open_backend(options);
  if (!kv.ok())
    return give_up(kv.status().message());
  const fsm::KvStore* kv_view = kv->get();
  auto node = node::Node::start(node_options, std::move(kv).value(), transport->get());
  if (!node.ok())
    return give_up("cannot start the node: " + node.status().to_string());
  spdlog::info(
      "started: http={} raft={} backend={} data={} {}", options.http_advertise,
      options.raft_advertise, options.fsm, options.data_dir,
      fresh ? (node_options.bootstrap ? "new cluster" : "waiting to join") : "resuming from disk");

  std::unique_ptr<nginx::GatewayController> gateway;
  if (!options.nginx_listen.empty()) {
    auto started = start_gateway(options, (*node)->status(), &client, &stop_signal);
    if (started.ok()) {
      gateway = std::move(started).value();
    } else {
      stop_signal.stop(1, started.status().message());
    }
  }
  (*node)->observe(
      [log = std::make_shared<StatusLog>()](const node::NodeStatus& st) { (*log)(st); });
  if (gateway) {
    const bool writes_to_leader = options.write_policy != http::WritePolicy::kReject;
    (*node)->observe([g = gateway.get(), writes_to_leader](const node::NodeStatus& st) {
      g->update(gateway_target(st, writes_to_leader));
    });
  }

  http::ApiOptions api_options;
  api_options.self_name = options.id;
  api_options.write_policy = options.write_policy;
  api_options.write_timeout = options.write_timeout;
  if (gateway) {
    api_options.readiness = [g = gateway.get(), n = node->get()] {
      return g->serves(n->status().membership.http_addresses())
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

  const auto [exit_code, why] = stop_signal.wait();
  if (exit_code == 0) {
    spdlog::info("{}: handing over and stopping", why);
  } else {
    spdlog::critical("{}: stopping", why);
  }
  if (joiner.joinable())
    joiner.join();
  (*node)->shutdown(options.election_timeout * 4);
  (*server)->stop();
  (*transport)->close(node_options.id);
  if (gateway)
    gateway->stop(5s);
  spdlog::info("stopped");
  cleanup();
  return exit_code;
}

}  // namespace raftnginx::cli
