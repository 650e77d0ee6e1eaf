// The nginx.conf of one node's gateway. Reads go to the local daemon. Writes go straight to the
// leader the conf names (`leader`, rewritten when leadership moves), or to the local daemon
// when none is named. A write that reaches a follower (a stale leader, or the local daemon)
// comes back as 307 with X-Raft-Leader, which nginx follows internally (same method, body and
// query) to the leader, so the client gets the leader's answer; a named leader that is down
// (502) sends the write through the local daemon instead. The leader's address is looked up in
// a map of the known members, each an upstream with keepalive: nginx never sends a write
// anywhere else, reuses its connections to the leader, and needs no resolver. An unknown
// leader, or a daemon that does not answer, is a 503 JSON error. Every request carries an
// Idempotency-Key (the client's, or nginx's $request_id), so that a write nginx sends twice is
// applied once, and every 5xx answer carries it back for the client's retry.
//
// Why each directive is there (found with Debian's nginx 1.22): see conf.cc.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "raftnginx/status.h"
#include "util/defaults.h"

namespace raftnginx::nginx {

// TLS files nginx uses (paths, PEM).
struct GatewayTls {
  std::string cert;
  std::string key;
  std::string ca;  // clients' CA (listening), or the members' CA (proxying)
  bool verify_client = false;
};

struct GatewayConf {
  std::string node_name;     // for the comment at the top
  std::string prefix;        // nginx's prefix: pid, logs and temp paths live here
  std::string listen;        // host:port the gateway serves
  std::string local_daemon;  // host:port of this node's daemon
  // The daemon's Unix socket: when set, nginx reaches its own daemon there instead, plaintext.
  std::string local_socket;
  // TLS for clients on `listen`; empty cert: plaintext.
  GatewayTls listen_tls;
  // TLS to the members' daemons (writes sent to the leader); empty ca: plain HTTP. Their
  // certificates must name `cluster_name`.
  GatewayTls member_tls;
  std::string cluster_name;
  std::vector<std::string> members;  // HTTP addresses a leader may have (X-Raft-Leader values)
  // The member writes go to first; empty: the local daemon (which redirects them).
  std::string leader;
  uint64_t max_body = 4 << 20;
  // Served at kGenerationPath, so that the daemon can see when a reload took effect.
  uint64_t generation = 1;
  bool run_as_root = false;  // then workers run as nobody (they touch no files: see conf.cc)
};

// nginx's worker processes: one, as the daemon beside it takes the rest of the machine.
inline constexpr size_t kWorkerProcesses = 1;

// The gateway answers GET here with its conf's generation (text).
inline constexpr const char* kGenerationPath = "/_raftnginx/generation";
static_assert(std::string_view(kGenerationPath).starts_with(defaults::kGatewayPaths));

// The conf, or InvalidArgument if an address in `conf` does not follow net/address.h's grammar
// (every address is checked again here, whatever checked it before, and written quoted).
Result<std::string> render_nginx_conf(const GatewayConf& conf);

}  // namespace raftnginx::nginx
