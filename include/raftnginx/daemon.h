// run_daemon: the whole raft-nginx daemon around a user's own backend. Public (docs/api.md).
//
// A program registers its backends (state machines and their HTTP routes) and any flags of its
// own in DaemonHooks, then hands its command line to run_daemon. Everything else is the
// daemon's: flags and config.json, membership, the nginx gateway with leader forwarding, read
// levels, exactly-once client sessions, snapshots, replica checks, metrics, status, TLS and auth,
// and the commands `certs`, `nginx-conf` and `repair`. raft-nginx's own main registers its
// built-in key-value store the same way (src/kv/kv_backends.h).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "raftnginx/env.h"
#include "raftnginx/gateway.h"
#include "raftnginx/routes.h"
#include "raftnginx/state_machine.h"
#include "raftnginx/status.h"

namespace raftnginx {

// A flag of the program's own: --name VALUE on the command line.
struct Flag {
  std::string name;  // "--audit-sync": two dashes, then lower-case letters, digits and '-'
  std::string help;
  std::string default_value;
  // Checks a value given on the command line, and the default (null: any value); InvalidArgument
  // says why, and the daemon exits with code 2 before it opens anything.
  std::function<Status(const std::string&)> check;
};

// What a backend is opened with.
struct BackendContext {
  std::string dir;              // the backend's own directory (<data-dir>/fsm): it exists
  storage::Env* env = nullptr;  // every file call, so that tests can inject faults
  size_t max_open_files = 0;    // the backend's share of the process's open files
  // Every Flag's value (given or default), by name: "--audit-sync".
  std::map<std::string, std::string, std::less<>> flags;
  // This node's nginx, to check the gateways' files before a change to them is proposed; null
  // if the node has no nginx binary (then such changes are refused).
  std::shared_ptr<const GatewayCheck> gateway_check;

  // The value of a registered flag; "" for a name nobody registered.
  std::string flag(std::string_view name) const {
    auto it = flags.find(name);
    return it == flags.end() ? std::string() : it->second;
  }
};

// An opened backend: the state machine the node drives, and the routes that serve it. Routes
// may keep pointers into the state machine: it outlives every request.
struct Backend {
  std::unique_ptr<fsm::StateMachine> state_machine;
  std::vector<Route> routes;
  // Optional: called with the node once it runs, so that the backend may start work of its own
  // (the key-value store expires keys on the leader), and with null before the node stops: once
  // that call returns, the backend must not use the Replica again.
  std::function<void(Replica*)> attach;
  // Optional: the gateways' files kept in the backend's state (raftnginx/gateway.h). The daemon
  // calls it from a thread of its own, again and again: it answers with the files once they may
  // have changed at an index after `after` (at once for 0), or NotFound at `deadline` if not.
  std::function<Result<GatewayFiles>(raft::Index after,
                                     std::chrono::steady_clock::time_point deadline)>
      gateway_files;
};

struct BackendSpec {
  std::string name;  // chosen with --fsm NAME: lower-case letters, digits and '-'
  std::string help;  // one line for --help
  // Opens (or creates) the backend; called once, before the node starts. An error stops the
  // daemon with its message.
  std::function<Result<Backend>(const BackendContext&)> open;
};

struct DaemonHooks {
  std::string program = "raft-nginx";  // in --help, --version and the log: a-z, 0-9 and '-'
  std::string description;             // the first line of --help
  std::string version;                 // the program's own version, if any, for --version
  // The first is the default. --inmem chooses one named "memory", if there is one.
  std::vector<BackendSpec> backends;
  std::vector<Flag> flags;
};

// Runs the daemon, or the command the first argument names (certs, nginx-conf, repair), as the
// command line says, until SIGTERM or SIGINT; returns the process's exit code (2: a usage
// error, already printed). Call it once per process, from main.
int run_daemon(int argc, char** argv, const DaemonHooks& hooks);

}  // namespace raftnginx
