// Api: the daemon's HTTP endpoints over one node: hraftd's /key and /join, membership,
// read consistency levels, and the operational endpoints (/status, /nodes, /metrics, /readyz,
// /healthz). README.md lists every route with its status codes.
//
// Writes are proposed to the local node; on a follower they follow the write policy (redirect
// to the leader, forward to it, or reject). Each request is answered exactly once: with the
// result, 503 when it was not done (safe to retry), or 504 when it may have been done (the write
// did not commit within write_timeout, or its node stopped: retry with the same Idempotency-Key).
//
// The code is split by kind of route: api.cc (routing, deadlines, error answers), api_keys.cc,
// api_members.cc and api_ops.cc. Handlers run on the server's threads or, for answers that wait
// on the node, on its raft loop: they never block.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "fsm/kv_store.h"
#include "http/auth.h"
#include "http/client.h"
#include "http/metrics.h"
#include "http/replica_check.h"
#include "http/server.h"
#include "http/write_policy.h"
#include "node/node.h"
#include "util/defaults.h"

namespace raftnginx::http {

struct ApiOptions {
  std::string self_name;
  WritePolicy write_policy = WritePolicy::kRedirect;
  std::chrono::milliseconds write_timeout = defaults::kWriteTimeout;
  // What else /readyz waits for (the node's nginx), if anything.
  std::function<Status()> readiness;
  // Who may do what (auth.h); null: anyone may do anything (loopback or --insecure only).
  std::shared_ptr<AuthTable> auth;
  // /status, /nodes and /metrics answer anyone, even with auth.
  bool public_status = false;
  // Started with --insecure on a non-loopback address: /status and /metrics say so.
  bool insecure = false;
  // The members' HTTP ports speak TLS: redirects name https.
  bool https = false;
  // Compares this node's state with its peers' (null: no checks).
  ReplicaCheck* replica_check = nullptr;
  // Checks, before /join adds a member or moves one, that the node answering at its raft address
  // is that member (TcpTransport::verify_member); `done` may run on any thread. Null: no check.
  std::function<void(const cluster::Member&, std::function<void(Status)> done)> verify_joining;
};

class Api {
 public:
  // `server` provides the timers; `client` carries forwarded writes and /nodes probes.
  Api(ApiOptions options, node::Node* node, const fsm::KvStore* kv, Server* server, Client* client);

  void handle(Request request, Respond respond);
  // Server::Screen: with auth, a request without credentials gets its 401 before its body is
  // read.
  std::optional<Response> screen(const Request& head) const;
  // Where the daemon adds gauges of its own (TLS certificate expiry, --insecure).
  Metrics& metrics() { return metrics_; }

 private:
  struct Call;
  using CallPtr = std::shared_ptr<Call>;
  // A call waiting on the node, and when it times out.
  enum class Expiry { kNotDone, kOutcomeUnknown };  // 503 or 504
  struct Waiting {
    std::chrono::steady_clock::time_point due;
    CallPtr call;
    Expiry expiry;
    const char* message;
  };
  // One request in flight: its route, start time, and the once-only answer.
  struct Call {
    Request request;
    std::string path;
    std::map<std::string, std::string> query;
    std::string route = "unknown";
    std::shared_ptr<const Principal> principal;  // who the credentials name, if anyone
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    Respond respond;
    Api* api = nullptr;
    std::atomic<bool> answered{false};
    // Where the call sits in api->waiting_, if it waits there (guarded by api->waiting_mu_).
    std::optional<std::list<Waiting>::iterator> waiting;

    bool done() const { return answered.load(); }
    // The first answer wins: a timeout and a late result may race.
    void answer(Response r);
  };

  void route(const CallPtr& call, const std::string& path);
  // Why this node must not serve reads (damage a scrub found, or a replica check it failed).
  std::optional<std::string> integrity_problem() const;
  // Who the request's credentials name (auth.h); REQUIRES: options_.auth.
  std::shared_ptr<const Principal> principal_of(const Request& request) const;
  // What a route needs from the caller.
  enum class Need { kNothing, kStatus, kKeys, kJoin, kAdmin };
  // Answers 401 or 403 and returns false unless the caller may.
  bool permitted(const CallPtr& call, Need need);
  // For key routes: answers 403 and returns false unless the caller may read (or write) `key`.
  bool may_read(const CallPtr& call, std::string_view key);
  bool may_write(const CallPtr& call, std::string_view key);

  // api_keys.cc
  void get_key(const CallPtr& call, const std::string& key);
  void set_keys(const CallPtr& call);
  void put_key(const CallPtr& call, const std::string& key);
  void delete_key(const CallPtr& call, const std::string& key);
  void propose(const CallPtr& call, std::string command);
  Response with_raft_headers(Response r, bool stale_read) const;

  // api_members.cc
  void join(const CallPtr& call);
  void remove(const CallPtr& call);
  void promote(const CallPtr& call);
  void transfer(const CallPtr& call);
  void change_membership(const CallPtr& call, raft::ConfChange cc);
  void rejoin_as_learner(const CallPtr& call, const cluster::Member& member, bool was_voter);
  void wait_for_leader(const CallPtr& call, raft::NodeId target,
                       std::chrono::steady_clock::time_point until);

  // api_ops.cc
  void status(const CallPtr& call);
  nlohmann::json status_json() const;
  void hash(const CallPtr& call);
  void nodes(const CallPtr& call);
  void readyz(const CallPtr& call);
  void metrics(const CallPtr& call);
  void healthz(const CallPtr& call);

  // api.cc: the answers every route shares.
  // A write that reached a follower (or a node that is no longer leader).
  void not_leader(const CallPtr& call);
  void forward_to_leader(const CallPtr& call, const std::string& leader_http);
  // The answer to a failed call, by the kind of failure (the one place that maps a Status).
  void fail(const CallPtr& call, const Status& s);
  // Answers with `message` (503 or 504, by `expiry`) unless the call was answered within the
  // write timeout.
  void deadline(const CallPtr& call, Expiry expiry, const char* message);
  void stop_waiting(Call* call);
  // Answers the calls whose deadline passed; runs every kSweepInterval.
  void sweep_deadlines();

  const ApiOptions options_;
  node::Node* node_;
  const fsm::KvStore* kv_;
  Server* server_;
  Client* client_;
  Metrics metrics_;
  // Calls waiting on the node, oldest first (all wait the same write timeout). One sweep
  // serves them all: a timer per call cost more than the write under load, and held every
  // call, body and all, until its timer fired. A call leaves the list when it is answered.
  std::mutex waiting_mu_;
  std::list<Waiting> waiting_;
};

// Decodes %XX escapes (and '+' when `plus_is_space`); nullopt if an escape is malformed.
std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space);

}  // namespace raftnginx::http
