// DaemonOptions: everything `raft-nginx` is told at start-up, from its flags and its -config
// file (the Go project's config.json). Precedence: built-in defaults, then the file, then the
// flags given on the command line.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "http/write_policy.h"
#include "raftnginx/daemon.h"
#include "raftnginx/status.h"
#include "util/defaults.h"

namespace raftnginx::cli {

struct Peer {
  std::string id;
  std::string http_address;
  std::string raft_address;
};

struct DaemonOptions {
  std::string id;  // default: the raft advertise address
  std::string http_bind{defaults::kHttpBind};
  std::string raft_bind{defaults::kRaftBind};
  std::string http_advertise;  // default: http_bind
  std::string raft_advertise;  // default: raft_bind
  std::string join;            // HTTP address of any member
  bool learner = false;
  bool inmem = false;
  std::string data_dir;
  std::string log_dir;  // default: <data_dir>/log
  std::string fsm;      // the backend (--fsm); default: the first the program registered
  std::string cluster_name{defaults::kClusterName};
  std::chrono::milliseconds election_timeout = defaults::kElectionTimeout;
  std::chrono::milliseconds heartbeat_timeout = defaults::kHeartbeatTimeout;
  // The round trip between the farthest members (0: loopback or LAN): sets the two timeouts
  // above where neither a flag nor the config file did (complete_and_check).
  std::chrono::milliseconds rtt{0};
  std::string preferred_leader;                // --preferred-leader, a comma list
  std::vector<std::string> preferred_leaders;  // its names, most wanted first (checked)
  uint64_t snapshot_threshold = defaults::kSnapshotThreshold;
  std::chrono::milliseconds snapshot_interval = defaults::kSnapshotInterval;
  size_t snapshot_retain = defaults::kSnapshotRetain;
  uint64_t trailing_logs = defaults::kTrailingLogs;
  // Integrity (docs/operations.md): replica checks, scrubs.
  std::chrono::milliseconds verify_interval = defaults::kVerifyInterval;
  std::chrono::milliseconds scrub_interval = defaults::kScrubInterval;
  uint64_t scrub_rate = defaults::kScrubBytesPerSecond;
  // Set aside whatever the data directory holds and rebuild this node from its peers
  // (cli/repair.h).
  bool repair = false;
  http::WritePolicy write_policy = http::WritePolicy::kRedirect;
  uint64_t max_body = defaults::kMaxBody;
  size_t max_connections = defaults::kMaxConnections;
  // A whole request must arrive within this.
  std::chrono::milliseconds http_read_timeout = defaults::kHttpReadTimeout;
  std::chrono::milliseconds write_timeout = defaults::kWriteTimeout;
  std::string log_level{defaults::kLogLevel};
  // Run an nginx gateway for this node on this address (empty: none), with this binary.
  std::string nginx_listen;
  std::string nginx_binary{defaults::kNginxBinary};
  std::chrono::milliseconds nginx_wait_min = defaults::kNginxWaitMin;
  std::chrono::milliseconds nginx_wait_max = defaults::kNginxWaitMax;
  std::chrono::milliseconds http_idle_timeout = defaults::kHttpIdleTimeout;

  // Trust (docs/security.md). Mutual TLS between nodes: this node's certificate (naming its id)
  // and key, and the cluster's CA.
  std::string node_cert, node_key, node_ca;
  // TLS for clients, on the HTTP port and the gateway; with http_verify_client, clients must
  // present a certificate of http_ca.
  std::string http_cert, http_key, http_ca;
  bool http_verify_client = false;
  // Principals and their permissions (http/auth.h); /status, /nodes and /metrics open to all.
  std::string auth_file;
  bool public_status = false;
  // This node's own credential (a file holding a token) for joining a secured cluster.
  std::string token_file;
  // Serve non-loopback addresses without TLS and auth.
  bool insecure = false;
  // Form the cluster once this many of `peers` (this node included) are up; 0: off.
  size_t bootstrap_expect = 0;
  std::vector<Peer> peers;
  // The program's own flags (DaemonHooks::flags), given or default, by name ("--audit-sync").
  std::map<std::string, std::string, std::less<>> program_flags;
};

// What parsing decided: run with these options, or exit with this code (after --help,
// --version, or an error already printed).
struct ParsedOptions {
  std::optional<DaemonOptions> options;
  int exit_code = 0;
};

// Parses the daemon's flags, the backends and flags `hooks` registers among them. REQUIRES:
// check_hooks(hooks) is ok.
ParsedOptions parse_options(int argc, char** argv, const DaemonHooks& hooks);

// What --version prints: the program and its version, then raft-nginx's and its public API's.
std::string version_line(const DaemonHooks& hooks);

// Whether a program's hooks are usable: InvalidArgument names a backend or flag that is not.
Status check_hooks(const DaemonHooks& hooks);

// Reads a config.json into `options`; unknown fields are appended to `warnings`. An error names
// the field (InvalidArgument) or the file (IOError).
Status load_config_file(const std::string& path, DaemonOptions* options,
                        std::vector<std::string>* warnings);

// "4194304", "512KiB", "4MiB", "1GiB" (also K, M, G, KB, MB, GB as powers of 1024).
Result<uint64_t> parse_size(std::string_view text);
// The shortest exact spelling parse_size reads back: "4MiB", "512KiB", "1000".
std::string format_size(uint64_t bytes);

}  // namespace raftnginx::cli
