// Api: the daemon's HTTP endpoints over one node: hraftd's /key and /join, membership,
// read consistency levels, and the operational endpoints (/status, /nodes, /metrics, /readyz,
// /healthz). README.md lists every route with its status codes.
//
// Writes are proposed to the local node; on a follower they follow the write policy (redirect
// to the leader, forward to it, or reject). Each request is answered exactly once: with the
// result, or 503 when the write did not commit within write_timeout (it may still commit).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>

#include "fsm/kv_store.h"
#include "http/client.h"
#include "http/metrics.h"
#include "http/server.h"
#include "node/node.h"

namespace raftnginx::http {

enum class WritePolicy { kRedirect, kForward, kReject };

struct ApiOptions {
  std::string self_name;
  WritePolicy write_policy = WritePolicy::kRedirect;
  std::chrono::milliseconds write_timeout{5000};
  // What else /readyz waits for (the node's nginx), if anything.
  std::function<Status()> readiness;
};

class Api {
 public:
  // `server` provides the timers; `client` carries forwarded writes and /nodes probes.
  Api(ApiOptions options, node::Node* node, const fsm::KvStore* kv, Server* server, Client* client);

  void handle(Request request, Respond respond);

 private:
  struct Call;  // one request in flight: its route, start time, and the once-only answer
  using CallPtr = std::shared_ptr<Call>;

  void route(const CallPtr& call, const std::string& path);
  void get_key(const CallPtr& call, const std::string& key);
  void set_keys(const CallPtr& call);
  void put_key(const CallPtr& call, const std::string& key);
  void delete_key(const CallPtr& call, const std::string& key);
  void propose(const CallPtr& call, std::string command);
  void join(const CallPtr& call);
  void remove(const CallPtr& call);
  void promote(const CallPtr& call);
  void transfer(const CallPtr& call);
  void change_membership(const CallPtr& call, raft::ConfChange cc);
  void status(const CallPtr& call);
  void nodes(const CallPtr& call);
  void readyz(const CallPtr& call);
  void metrics(const CallPtr& call);
  void healthz(const CallPtr& call);
  // A write that reached a follower (or a node that is no longer leader).
  void not_leader(const CallPtr& call);
  // Answers 503 with `message` unless the call was answered within the write timeout.
  void deadline(const CallPtr& call, const char* message);
  // Answers the calls whose deadline passed; runs every kSweepInterval.
  void sweep_deadlines();
  void wait_for_leader(const CallPtr& call, raft::NodeId target,
                       std::chrono::steady_clock::time_point until);
  // Adds the X-Raft-* headers of a key request.
  Response with_raft_headers(Response r, bool stale_read) const;
  // Maps a failed write or read to its HTTP answer.
  void fail(const CallPtr& call, const Status& s);

  const ApiOptions options_;
  node::Node* node_;
  const fsm::KvStore* kv_;
  Server* server_;
  Client* client_;
  Metrics metrics_;
  // Calls waiting on the node, oldest first (all wait the same write timeout). One sweep
  // serves them all: a timer per call cost more than the write under load, and held every
  // call, body and all, until its timer fired. A call leaves the list when it is answered.
  struct Waiting {
    std::chrono::steady_clock::time_point due;
    CallPtr call;
    const char* message;
  };
  void stop_waiting(Call* call);
  std::mutex waiting_mu_;
  std::list<Waiting> waiting_;
};

}  // namespace raftnginx::http
