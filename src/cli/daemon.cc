// run_daemon (include/raftnginx/daemon.h): the command line, then one node wired to its storage,
// the backend the hooks registered, the TCP transport and the HTTP API; it forms or joins the
// cluster, and runs until SIGTERM or SIGINT, when it hands leadership over and stops cleanly.
#include "raftnginx/daemon.h"

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/certs_command.h"
#include "cli/client_command.h"
#include "cli/file_limits.h"
#include "cli/joining.h"
#include "cli/nginx_conf_command.h"
#include "cli/repair.h"
#include "cli/restore.h"
#include "cli/service_manager.h"
#include "cli/status_log.h"
#include "cli/stop_signal.h"
#include "cli/trust.h"
#include "http/api.h"
#include "http/client.h"
#include "http/server.h"
#include "net/address.h"
#include "net/tls.h"
#include "nginx/config_files.h"
#include "nginx/controller.h"
#include "nginx/files_follower.h"
#include "node/node.h"
#include "transport/tcp_transport.h"
#include "util/checksum.h"
#include "util/duration.h"

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
// Logs go to stderr, as the README says: stdout stays for what a command prints as its answer.
void setup_logging(const DaemonOptions& options, const DaemonHooks& hooks) {
  // Not registered by name: a program may have loggers of its own, under any names.
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      hooks.program, std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l node=" + options.id + " %v");
  spdlog::set_level(spdlog::level::from_str(options.log_level));
}

node::NodeOptions node_options_for(const DaemonOptions& options) {
  node::NodeOptions o;
  o.id = cluster::node_id_for(options.id);
  o.data_dir = options.data_dir;
  o.log_dir = options.log_dir;
  o.tick = std::min(options.heartbeat_timeout, options.election_timeout / 10);
  o.election_ticks = static_cast<int>(options.election_timeout / o.tick);
  o.heartbeat_ticks = std::max(1, static_cast<int>(options.heartbeat_timeout / o.tick));
  o.snapshot_threshold = options.snapshot_threshold;
  o.snapshot_interval = options.snapshot_interval;
  o.trailing_logs = options.trailing_logs;
  o.retain_snapshots = options.snapshot_retain;
  o.scrub_interval = options.scrub_interval;
  for (const std::string& name : options.preferred_leaders)
    o.preferred_leaders.push_back(cluster::node_id_for(name));
  o.scrub_bytes_per_second = options.scrub_rate;
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

// Opens the backend --fsm names, in <data-dir>/fsm, and checks its routes.
Result<Backend> open_backend(const DaemonOptions& options, const DaemonHooks& hooks,
                             const FileBudget& files, std::shared_ptr<const GatewayCheck> check) {
  const auto spec = std::find_if(hooks.backends.begin(), hooks.backends.end(),
                                 [&](const BackendSpec& b) { return b.name == options.fsm; });
  RAFTNGINX_CHECK(spec != hooks.backends.end(), "--fsm was checked against the backends");
  BackendContext context;
  context.dir = options.data_dir + "/fsm";
  context.env = storage::Env::posix();
  context.max_open_files = files.backend_files;
  context.flags = options.program_flags;
  context.gateway_check = std::move(check);
  if (Status s = context.env->create_dirs(context.dir); !s.ok())
    return s.in_context("cannot create the backend's directory: ");
  // The data directory remembers its backend: another one would misread its state.
  const std::string marker = options.data_dir + "/backend";
  if (auto held = context.env->read_file(marker); held.ok() && *held != options.fsm + "\n") {
    return Status::invalid_argument(options.data_dir + " holds the state of another backend (" +
                                    marker +
                                    "): start with the "
                                    "--fsm it was made with, or use another data directory");
  } else if (!held.ok()) {
    if (held.status().code() != Status::Code::kNotFound)
      return held.status();
    if (Status s = context.env->write_file_atomically(marker, options.fsm + "\n"); !s.ok())
      return s;
  }
  // The program's code: an exception it throws is an error like any other.
  Result<Backend> backend = Status::io_error("not opened");
  try {
    backend = spec->open(context);
  } catch (const std::exception& e) {
    backend = Status::io_error(std::string("it threw: ") + e.what());
  } catch (...) {
    backend = Status::io_error("it threw");
  }
  if (!backend.ok())
    return backend.status().in_context("backend " + spec->name + ": ");
  if (backend->state_machine == nullptr)
    return Status::invalid_argument("backend " + spec->name + " opened no state machine");
  if (Status s = http::Api::check_routes(backend->routes); !s.ok())
    return s.in_context("backend " + spec->name + ": ");
  return backend;
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

// Where the local nginx reaches its daemon: a Unix socket. As root, nginx's workers run as nobody
// and may not traverse a private data directory: the socket goes to /run/raft-nginx, named
// after the data directory. Otherwise it is in the nginx prefix, which the workers share.
Result<std::string> daemon_socket(const DaemonOptions& options) {
  std::string path = options.data_dir + "/nginx/daemon.sock";
  if (geteuid() == 0) {
    const std::string dir = "/run/raft-nginx";
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec || ::chmod(dir.c_str(), 0711) != 0)
      return Status::io_error("cannot create " + dir + " for the nginx socket");
    path = fmt::format("{}/{:016x}.sock", dir, fnv1a64(options.data_dir));
  }
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return Status::invalid_argument("the nginx socket path " + path +
                                    " is too long: use a "
                                    "shorter data directory");
  return path;
}

// This node's gateway conf: the members' addresses aside, what the daemon's options say.
nginx::GatewayConf gateway_conf(const DaemonOptions& options, const std::string& socket,
                                std::vector<std::string> members) {
  nginx::GatewayConf conf;
  conf.node_name = options.id;
  conf.prefix = options.data_dir + "/nginx";
  conf.listen = options.nginx_listen;
  conf.local_daemon = net::local_address(options.http_bind);
  conf.local_socket = socket;
  conf.members = std::move(members);
  conf.max_body = options.max_body;
  conf.run_as_root = geteuid() == 0;
  conf.cluster_name = options.cluster_name;
  if (!options.http_cert.empty()) {
    conf.listen_tls = {options.http_cert, options.http_key, options.http_ca,
                       options.http_verify_client};
    conf.member_tls = {options.http_cert, options.http_key,
                       options.http_ca.empty() ? options.node_ca : options.http_ca, false};
  }
  return conf;
}

// What checks the gateways' files before a change to them is proposed: this node's nginx, or
// null if it has no nginx binary. A node that runs no gateway checks against the conf it would
// run, on an address nginx -t never binds.
std::shared_ptr<nginx::NginxCheck> gateway_check(const DaemonOptions& options,
                                                 const std::string& socket) {
  if (::access(options.nginx_binary.c_str(), X_OK) != 0)
    return nullptr;
  nginx::GatewayConf conf = gateway_conf(options, socket, {});
  // nginx -t binds the listen addresses, and takes one in use: the daemon's own.
  if (conf.listen.empty())
    conf.listen = net::local_address(options.http_bind);
  std::error_code ec;
  std::filesystem::create_directories(conf.prefix + "/logs", ec);
  return std::make_shared<nginx::NginxCheck>(options.nginx_binary, std::move(conf));
}

// Starts this node's nginx and its controller; nginx dying stops the daemon.
Result<std::unique_ptr<nginx::GatewayController>> start_gateway(const DaemonOptions& options,
                                                                const std::string& socket,
                                                                const node::NodeStatus& st,
                                                                http::Client* client,
                                                                StopSignal* stop) {
  nginx::GatewayConf conf =
      gateway_conf(options, socket, nginx::resolvable(st.membership.http_addresses(), nullptr));
  auto on_exit = [stop](std::string why) { stop->stop(1, why); };
  auto gateway = nginx::Gateway::start(options.nginx_binary, conf, on_exit);
  const std::string files = conf.prefix + "/cluster";
  std::error_code ec;
  if (!gateway.ok() && std::filesystem::exists(std::filesystem::symlink_status(files))) {
    // The gateway files it served last time may be what it refuses now (a name that no longer
    // resolves): without them, until the cluster's current ones arrive and pass nginx -t.
    spdlog::error("nginx: {}; starting again without the gateway files of its last run",
                  gateway.status().message());
    std::filesystem::remove_all(files, ec);
    gateway = nginx::Gateway::start(options.nginx_binary, conf, on_exit);
  }
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
                                                    options.nginx_binary, std::move(probe));
}

// Where the node keeps its data: made absolute (so that nginx's prefix and the logs name the
// same place whatever the working directory), or a fresh tmpfs directory with -inmem, which is
// removed again when this goes.
class DataDir {
 public:
  static Result<std::unique_ptr<DataDir>> prepare(DaemonOptions* options) {
    auto dir = std::make_unique<DataDir>();
    if (options->inmem) {
      const std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
      std::string pattern = base + "/raft-nginx-XXXXXX";
      if (mkdtemp(pattern.data()) == nullptr)
        return Status::io_error("cannot create an in-memory directory under " + base);
      dir->temporary_ = pattern;
      options->data_dir = pattern;
    }
    options->data_dir = std::filesystem::absolute(options->data_dir).lexically_normal().string();
    options->log_dir =
        options->log_dir.empty()
            ? options->data_dir + "/log"
            : std::filesystem::absolute(options->log_dir).lexically_normal().string();
    std::error_code ec;
    std::filesystem::create_directories(options->data_dir, ec);
    if (ec)
      return Status::io_error("cannot create the data directory " + options->data_dir + ": " +
                              ec.message());
    return dir;
  }
  ~DataDir() {
    if (!temporary_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(temporary_, ec);
    }
  }

 private:
  std::string temporary_;
};

http::ServerOptions server_options_for(const DaemonOptions& options, const Trust& trust,
                                       const std::string& socket, const FileBudget& files) {
  http::ServerOptions o;
  o.listen = options.http_bind;
  o.unix_socket = socket;
  o.tls = trust.http_server;
  o.max_body = options.max_body;
  o.max_connections = files.http_connections;
  o.read_timeout = options.http_read_timeout;
  o.idle_timeout = options.http_idle_timeout;
  return o;
}

transport::TcpTransportOptions transport_options_for(const DaemonOptions& options,
                                                     const Trust& trust, const FileBudget& files,
                                                     std::string cluster_id) {
  transport::TcpTransportOptions o;
  o.listen = options.raft_bind;
  o.cluster_name = options.cluster_name;
  o.cluster_id = std::move(cluster_id);
  o.tls = trust.node;
  o.max_inbound_connections = files.raft_connections;
  return o;
}

http::ApiOptions api_options_for(const DaemonOptions& options, const Trust& trust, node::Node* node,
                                 nginx::GatewayController* gateway,
                                 transport::TcpTransport* transport, http::ReplicaCheck* check) {
  http::ApiOptions o;
  o.self_name = options.id;
  o.write_policy = options.write_policy;
  o.write_timeout = options.write_timeout;
  o.recent_contact = options.election_timeout;
  o.auth = trust.auth;
  o.public_status = options.public_status;
  o.insecure = options.insecure;
  o.https = trust.http_server != nullptr;
  o.replica_check = check;
  o.own_authorization = trust.own_authorization;
  o.cluster_id = [transport, name = options.cluster_name] {
    std::string id = transport->cluster_id();
    return id.empty() ? name : id;
  };
  if (trust.node) {
    o.verify_joining = [transport](const cluster::Member& m, std::function<void(Status)> done) {
      transport->verify_member(m.raft_address, cluster::node_id_for(m.name), std::move(done));
    };
  }
  if (gateway != nullptr) {
    o.gateway_status = [gateway] {
      const nginx::GatewayFilesState st = gateway->files_state();
      nlohmann::json j{{"files_index", st.served_index}, {"latest_index", st.latest_index}};
      if (!st.failure.empty())
        j["refused"] = {{"key", st.failed_key}, {"index", st.failed_index}, {"error", st.failure}};
      return j;
    };
    o.readiness = [gateway, node] {
      return gateway->serves(node->status().membership.http_addresses())
                 ? Status()
                 : Status::unavailable("nginx is loading the members");
    };
  }
  return o;
}

// The readings only the daemon knows: whether it runs --insecure, when its certificates expire,
// what its raft port refused, what the integrity checks found.
void add_readings(http::Metrics& metrics, const DaemonOptions& options, const Trust& trust,
                  const transport::TcpTransport* transport, const node::Node* node,
                  const http::ReplicaCheck* check, const nginx::GatewayController* gateway) {
  if (gateway != nullptr) {
    metrics.add_gauge("raftnginx_gateway_files_index",
                      "The index of the gateway files (nginx/ keys) this node's nginx serves.",
                      "raftnginx_gateway_files_index", [gateway] {
                        return static_cast<double>(gateway->files_state().served_index);
                      });
    metrics.add_gauge("raftnginx_gateway_files_refused",
                      "1 if this node's nginx refused the latest gateway files (it serves its "
                      "last good ones).",
                      "raftnginx_gateway_files_refused",
                      [gateway] { return gateway->files_state().failure.empty() ? 0.0 : 1.0; });
  }
  metrics.add_gauge("raftnginx_replica_hash_mismatch",
                    "Peers whose state hash differed from this node's at the last replica check.",
                    "raftnginx_replica_hash_mismatch", [check] {
                      auto v = check->last();
                      return v ? static_cast<double>(v->mismatched.size()) : 0.0;
                    });
  metrics.add_gauge("raftnginx_replica_diverged",
                    "1 if this node's state differs from most of its peers': it serves no reads.",
                    "raftnginx_replica_diverged",
                    [check] { return check->diverged() ? 1.0 : 0.0; });
  metrics.add_gauge("raftnginx_storage_damaged",
                    "1 if a scrub found damage in this node's files: it serves no reads.",
                    "raftnginx_storage_damaged", [node] { return node->damaged() ? 1.0 : 0.0; });
  metrics.add_counter("raftnginx_scrubs_completed_total",
                      "Passes over every stored file that finished.",
                      [node] { return static_cast<double>(node->status().scrubs_completed); });
  metrics.add_counter(
      "raftnginx_raft_refused_connections_total",
      "Connections the raft port refused or closed: wrong cluster or identity, "
      "garbage, oversized or stalled frames, over a limit.",
      [transport] { return static_cast<double>(transport->refused_connections()); });
  metrics.add_counter(
      "raftnginx_snapshot_sent_bytes_total", "Snapshot bytes streamed to peers.",
      [transport] { return static_cast<double>(transport->snapshot_bytes_sent()); });
  metrics.add_counter(
      "raftnginx_snapshot_resumed_bytes_total",
      "Snapshot bytes not sent again: the peer kept them from a stream that broke off.",
      [transport] { return static_cast<double>(transport->snapshot_bytes_resumed()); });
  metrics.add_gauge("raftnginx_insecure",
                    "1 if the node serves beyond loopback without TLS and auth (--insecure).",
                    "raftnginx_insecure", [insecure = options.insecure] { return insecure; });
  for (const auto& [port, tls] :
       {std::pair<const char*, std::shared_ptr<net::TlsContext>>{"raft", trust.node},
        {"http", trust.http_server}}) {
    if (!tls)
      continue;
    metrics.add_gauge(
        "raftnginx_tls_certificate_expiry_timestamp_seconds",
        "When the certificate a port presents stops being valid (Unix time).",
        std::string("raftnginx_tls_certificate_expiry_timestamp_seconds{port=\"") + port + "\"}",
        [context = tls] {  // clang 14 cannot capture a structured binding by name
          return static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(
                                         context->not_after().time_since_epoch())
                                         .count());
        });
  }
}

// Logs node events, and feeds them to the gateway if there is one. A node that failed (its disk,
// its state machine) stops the daemon with exit code 1, so that a supervisor restarts it from
// what is durable rather than leave it serving reads it can no longer bring up to date.
void observe_node(node::Node* node, nginx::GatewayController* gateway, bool writes_to_leader,
                  StopSignal* stop) {
  node->observe([log = std::make_shared<StatusLog>()](const node::NodeStatus& st) { (*log)(st); });
  node->observe([stop](const node::NodeStatus& st) {
    if (!st.failure.ok())
      stop->stop(1, "stopping after a failure: " + st.failure.to_string());
  });
  if (gateway != nullptr) {
    node->observe([gateway, writes_to_leader](const node::NodeStatus& st) {
      gateway->update(gateway_target(st, writes_to_leader));
    });
  }
}

// Everything the daemon opens before its node starts, in order: the data directory (its data
// set aside first if a repair is due), the certificates and keys, its share of the open files,
// and its two ports. An error says what could not be opened.
struct Opened {
  std::unique_ptr<DataDir> data_dir;
  bool repairing = false;  // a rebuild from the peers is due (raft-nginx repair, --repair)
  Trust trust;
  FileBudget files;
  std::string socket;  // where the gateway's nginx reaches this daemon, if there is a gateway
  std::unique_ptr<http::Server> server;
  std::unique_ptr<transport::TcpTransport> transport;
};

Result<Opened> open_daemon(DaemonOptions* options) {
  auto data_dir = DataDir::prepare(options);
  if (!data_dir.ok())
    return data_dir.status();
  // Read before a repair sets the data aside: a node rebuilt from its peers stays in its cluster.
  auto recorded_id = read_cluster_id(storage::Env::posix(), options->data_dir);
  if (!recorded_id.ok())
    return recorded_id.status();
  const bool repairing = repair_requested(*options);
  if (repairing) {
    auto aside = set_aside(options->data_dir, options->log_dir);
    if (!aside.ok())
      return aside.status().in_context("repair: ");
    spdlog::warn("repair: rebuilding this node from its peers{}",
                 aside->empty() ? "" : "; its data was moved to " + *aside);
    if (*recorded_id) {
      if (Status s = write_cluster_id(storage::Env::posix(), options->data_dir, **recorded_id);
          !s.ok())
        return s;
    }
  }
  // A new node that joins takes the id of the cluster that adds it (adopt_cluster_id).
  const bool joining = !options->join.empty() && !has_state(options->data_dir, options->log_dir);
  const std::string cluster_id =
      recorded_id->value_or(joining && !repairing ? "" : options->cluster_name);
  auto trust = Trust::load(*options);
  if (!trust.ok())
    return trust.status();
  auto files = share_open_files(options->max_connections);
  if (!files.ok())
    return files.status();
  if (files->http_connections < options->max_connections) {
    spdlog::warn(
        "--max-connections lowered from {} to {}: the process may open {} files "
        "(RLIMIT_NOFILE), and keeps the rest for RocksDB, the raft port and its own files",
        options->max_connections, files->http_connections, files->limit);
  }
  if (options->insecure)
    spdlog::warn("--insecure: serving without node TLS, client TLS or auth (docs/security.md)");
  std::string socket;
  if (!options->nginx_listen.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options->data_dir + "/nginx", ec);
    auto path = daemon_socket(*options);
    if (!path.ok())
      return path.status();
    socket = std::move(path).value();
  }
  // The raft port first: once the HTTP port takes connections, both are bound (supervisors and
  // tests wait on the HTTP port).
  auto transport =
      transport::TcpTransport::start(transport_options_for(*options, *trust, *files, cluster_id));
  if (!transport.ok())
    return transport.status();
  auto server = http::Server::listen(server_options_for(*options, *trust, socket, *files));
  if (!server.ok())
    return server.status();
  return Opened{std::move(data_dir).value(), repairing,
                std::move(trust).value(),    *files,
                std::move(socket),           std::move(server).value(),
                std::move(transport).value()};
}

// Starts the node. A member being rebuilt is first taken back as a learner (with its log and
// its vote gone, it must not vote): *was_voter says what it was. A fresh node bootstraps, or
// waits for its bootstrap peers, or for a join. Unavailable if a stop came first.
Result<std::unique_ptr<node::Node>> start_node(const DaemonOptions& options, Opened& opened,
                                               std::unique_ptr<fsm::StateMachine> state_machine,
                                               http::Client* client, bool* was_voter,
                                               const std::atomic<bool>* stopping) {
  if (opened.repairing) {
    auto rejoined = rejoin_as_learner(client, options, opened.trust.own_authorization, stopping);
    if (!rejoined.ok())
      return rejoined.status().in_context("repair: ");
    *was_voter = *rejoined;
  }
  node::NodeOptions node_options = node_options_for(options);
  const bool fresh = !has_state(options.data_dir, options.log_dir);
  if (fresh && options.bootstrap_expect > 0) {
    if (!wait_for_peers(client, options, stopping))
      return Status::unavailable("stopped while waiting for the bootstrap peers");
    node_options.bootstrap = initial_members(options);
  } else if (fresh && options.join.empty()) {
    node_options.bootstrap = initial_members(options);
  }
  auto node = node::Node::start(node_options, std::move(state_machine), opened.transport.get());
  if (!node.ok())
    return node.status().in_context("cannot start the node: ");
  spdlog::info(
      "started: http={} raft={} backend={} data={} heartbeat={} election={} {}",
      options.http_advertise, options.raft_advertise, options.fsm, options.data_dir,
      format_duration(options.heartbeat_timeout), format_duration(options.election_timeout),
      fresh ? (node_options.bootstrap ? "new cluster" : "waiting to join") : "resuming from disk");
  return node;
}

// After a join: the node goes by the id of the cluster that took it in, from now on and after a
// restart. A node whose data belongs to another cluster must not serve this one.
Status adopt_cluster_id(const std::string& id, const DaemonOptions& options,
                        transport::TcpTransport* transport) {
  const std::string ours = transport->cluster_id();
  if (ours == id)
    return Status();
  if (!ours.empty()) {
    return Status::invalid_argument("the cluster at " + options.join + " goes by '" + id +
                                    "', and this node's data belongs to '" + ours +
                                    "': give it an empty data directory to join");
  }
  if (Status s = write_cluster_id(storage::Env::posix(), options.data_dir, id); !s.ok())
    return s;
  transport->set_cluster_id(id);
  spdlog::info("joined cluster '{}'", id);
  return Status();
}

// Hands the backend its node (or takes it back: null), if it asked. What it throws is logged.
void attach_backend(const std::function<void(Replica*)>& attach, Replica* replica) {
  if (!attach)
    return;
  try {
    attach(replica);
  } catch (const std::exception& e) {
    spdlog::error("the backend's attach threw: {}", e.what());
  } catch (...) {
    spdlog::error("the backend's attach threw");
  }
}

// A text for a STATUS= line: a newline in it would start another assignment.
std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

// Tells systemd `state`; logs the first failure only (a socket that is not there stays so).
class ServiceManager {
 public:
  explicit ServiceManager(std::string socket) : socket_(std::move(socket)) {}
  void tell(std::string_view state) {
    Status s = notify_service_manager(socket_, state);
    if (!s.ok() && !warned_.exchange(true))
      spdlog::warn("could not tell systemd: {}", s.message());
  }

 private:
  const std::string socket_;
  std::atomic<bool> warned_{false};
};

// Type=notify: READY=1 once the node would answer /readyz with 200 (polled: readiness also
// waits for the log to be applied, which no status change announces); until then STATUS= says
// why not, for `systemctl status`.
void notify_when_ready(const http::Api& api, ServiceManager* manager, StopSignal* stop) {
  std::string said;
  for (Status ready = api.ready(); !ready.ok(); ready = api.ready()) {
    if (ready.message() != said) {
      said = ready.message();
      manager->tell("STATUS=" + one_line(said));
    }
    if (stop->wait_for(defaults::kReadyPoll))
      return;
  }
  if (!*stop->stopping())
    manager->tell("READY=1\nSTATUS=ready");
}

// Runs the daemon to completion; returns the process exit code.
int serve(const DaemonOptions& given, const DaemonHooks& hooks) {
  DaemonOptions options = given;
  setup_logging(options, hooks);
  spdlog::info("{}", version_line(hooks));
  static StopSignal stop_signal;  // static: its detached thread may outlive this function
  auto give_up = [](const std::string& why) {
    spdlog::critical("{}", why);
    return 1;
  };
  auto daemon = open_daemon(&options);
  if (!daemon.ok())
    return give_up(daemon.status().message());
  Opened& opened = daemon.value();
  Trust& trust = opened.trust;
  http::Client client(http::ClientOptions{trust.http_client, options.cluster_name});
  const std::shared_ptr<nginx::NginxCheck> check = gateway_check(options, opened.socket);
  auto backend = open_backend(options, hooks, opened.files, check);
  if (!backend.ok())
    return give_up(backend.status().message());
  bool was_voter = false;
  auto node = start_node(options, opened, std::move(backend.value().state_machine), &client,
                         &was_voter, stop_signal.stopping());
  if (!node.ok()) {
    if (*stop_signal.stopping())
      return 0;
    const bool damaged = node.status().code() == Status::Code::kCorruption;
    return give_up(node.status().message() +
                   (damaged ? "; to rebuild it from its peers: " + hooks.program + " repair " +
                                  options.data_dir + ", then start it with -join (see the README)"
                            : ""));
  }

  std::unique_ptr<nginx::GatewayController> gateway;
  if (!options.nginx_listen.empty()) {
    auto started = start_gateway(options, opened.socket, (*node)->status(), &client, &stop_signal);
    if (started.ok()) {
      gateway = std::move(started).value();
      if (check)
        check->follow([g = gateway.get()] { return g->conf(); });
    } else {
      stop_signal.stop(1, started.status().message());
    }
  }
  observe_node(node->get(), gateway.get(), options.write_policy != http::WritePolicy::kReject,
               &stop_signal);
  http::ReplicaCheck replica_check(
      http::ReplicaCheckOptions{options.verify_interval, trust.own_authorization}, node->get(),
      &client, opened.server.get());
  (*node)->observe([&replica_check](const node::NodeStatus& st) { replica_check.on_status(st); });
  http::Api api(api_options_for(options, trust, node->get(), gateway.get(), opened.transport.get(),
                                &replica_check),
                node->get(), std::move(backend.value().routes), opened.server.get(), &client);
  add_readings(api.metrics(), options, trust, opened.transport.get(), node->get(), &replica_check,
               gateway.get());
  stop_signal.on_reload([&trust, g = gateway.get()] {
    trust.reload();
    if (g != nullptr)
      g->reload();
  });
  opened.server->serve(
      [&api](http::Request request, http::Respond respond) {
        api.handle(std::move(request), std::move(respond));
      },
      [&api](const http::Request& head) { return api.screen(head); });
  replica_check.start();
  const std::function<void(Replica*)> attach = std::move(backend.value().attach);
  attach_backend(attach, node->get());
  std::unique_ptr<nginx::FilesFollower> files_follower;
  if (gateway && backend.value().gateway_files) {
    files_follower = std::make_unique<nginx::FilesFollower>(
        std::move(backend.value().gateway_files), gateway.get(), options.nginx_wait_min,
        options.nginx_wait_max);
  }
  std::thread joiner;
  if (opened.repairing) {
    joiner = std::thread([&] {
      finish_repair(node->get(), &client, options, trust.own_authorization, was_voter,
                    stop_signal.stopping());
    });
  } else if (!options.join.empty()) {
    joiner = std::thread([&] {
      auto id = join_cluster(&client, options, opened.transport->cluster_id(),
                             trust.own_authorization, stop_signal.stopping());
      Status s = id.ok() ? adopt_cluster_id(*id, options, opened.transport.get()) : id.status();
      if (!s.ok() && s.code() != Status::Code::kUnavailable)
        stop_signal.stop(1, s.message());
    });
  }

  std::optional<ServiceManager> manager;
  std::thread ready_notifier;
  if (std::string socket = service_manager_socket(); !socket.empty()) {
    manager.emplace(std::move(socket));
    ready_notifier =
        std::thread([&api, &manager] { notify_when_ready(api, &*manager, &stop_signal); });
  }

  const auto [exit_code, why] = stop_signal.wait();
  if (manager) {
    ready_notifier.join();
    manager->tell("STOPPING=1\nSTATUS=" + one_line(why));
  }
  if (exit_code == 0) {
    spdlog::info("{}: handing over and stopping", why);
  } else {
    spdlog::critical("{}: stopping", why);
  }
  stop_signal.on_reload(nullptr);
  if (joiner.joinable())
    joiner.join();
  if (files_follower)
    files_follower->stop();
  attach_backend(attach, nullptr);
  (*node)->shutdown(options.election_timeout * 4);
  opened.server->stop();
  opened.transport->close(node_options_for(options).id);
  if (gateway)
    gateway->stop(5s);
  spdlog::info("stopped");
  return exit_code;
}

}  // namespace
}  // namespace raftnginx::cli

namespace raftnginx {

int run_daemon(int argc, char** argv, const DaemonHooks& hooks) {
  using Command = int (*)(int, char**);
  static const std::pair<std::string_view, Command> kCommands[] = {
      {"nginx-conf", cli::run_nginx_conf_command}, {"certs", cli::run_certs_command},
      {"repair", cli::run_repair_command},         {"kv", cli::run_kv_command},
      {"cluster", cli::run_cluster_command},       {"backup", cli::run_backup_command},
      {"restore", cli::run_restore_command}};
  for (const auto& [name, run] : kCommands) {
    if (argc > 1 && argv[1] == name)
      return run(argc - 1, argv + 1);
  }
  if (Status s = cli::check_hooks(hooks); !s.ok()) {
    std::cerr << hooks.program << ": " << s.message() << "\n";
    return 2;
  }
  cli::ParsedOptions parsed = cli::parse_options(argc, argv, hooks);
  if (!parsed.options)
    return parsed.exit_code;
  return cli::serve(*parsed.options, hooks);
}

}  // namespace raftnginx
