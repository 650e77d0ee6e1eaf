// ReplicaCheck: compares this node's state with its peers' at every checkpoint (node.h), in the
// spirit of etcd's corruption check, so that a replica whose state diverged (a value changed
// on disk behind the backend's back, a bug that applied a command differently) is found, named,
// and stops serving reads until it is repaired.
//
// The leader proposes a checkpoint every `interval` (and on demand: GET /status?verify). Each
// node, once it has applied it, asks every other voter for its hash at that checkpoint (GET
// /hash?index=I, with the node's own credentials) and compares. A peer that differs is named in
// the verdict (/status, /nodes, raftnginx_replica_hash_mismatch, the log). A node that differs
// from more than half of the peers that answered is the one that diverged: it answers reads with
// 503 from then on (and hands leadership away if it leads), until `raft-nginx repair` rebuilds
// it from its peers. Backends that take no part (no state hash) are not compared.
//
// Threads: on_status() from the node's observers; the fetches answer on the client's thread;
// everything else from any thread. Internally synchronized.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/client.h"
#include "http/server.h"
#include "node/node.h"

namespace raftnginx::http {

struct ReplicaCheckOptions {
  std::chrono::milliseconds interval = defaults::kVerifyInterval;
  // The Authorization header to send peers (their /hash needs some principal under --auth).
  std::string authorization;
  // How long to wait for a peer to reach a checkpoint and answer.
  std::chrono::milliseconds peer_wait{10000};
};

struct ReplicaVerdict {
  raft::Index index = 0;
  uint64_t hash = 0;  // this node's
  // Each other voter's hash at `index`, or why there is none (unreachable, no hash there).
  std::map<std::string, Result<uint64_t>> peers;
  std::vector<std::string> mismatched;
  size_t voters = 0;  // in the configuration, this node included
  // A majority of the voters holds one same hash, not this node's: this node's state is the one
  // that went wrong. With fewer answers nothing is concluded about this node.
  bool diverged = false;
};

class ReplicaCheck {
 public:
  ReplicaCheck(ReplicaCheckOptions options, node::Node* node, Client* client, Server* server);
  // Answers still on their way from peers are dropped from here on.
  ~ReplicaCheck();

  // Starts the leader's checkpoint timer (none if the interval is 0).
  void start();
  // A status change: a new checkpoint starts a comparison.
  void on_status(const node::NodeStatus& status);
  // Proposes a checkpoint now and calls `done` with its verdict (NotLeader on a follower).
  void verify_now(std::function<void(Result<ReplicaVerdict>)> done);

  std::optional<ReplicaVerdict> last() const;
  // Why this node must serve no reads, if it diverged (cheap when it did not: every read asks).
  std::optional<std::string> diverged() const;

 private:
  struct Round;
  void tick();
  void ask(const std::shared_ptr<Round>& round, const std::string& name, const std::string& address,
           std::chrono::steady_clock::time_point until);
  void conclude(const std::shared_ptr<Round>& round);

  // Whether this object still stands, for answers that arrive on the client's thread.
  struct Life {
    std::mutex mu;
    bool alive = true;
  };
  const std::shared_ptr<Life> life_ = std::make_shared<Life>();
  const ReplicaCheckOptions options_;
  node::Node* node_;
  Client* client_;
  Server* server_;
  mutable std::mutex mu_;
  raft::Index started_ = 0;  // the newest checkpoint a round began for
  std::optional<ReplicaVerdict> last_;
  std::optional<std::string> diverged_;
  std::atomic<bool> has_diverged_{false};
  std::multimap<raft::Index, std::function<void(Result<ReplicaVerdict>)>> waiting_;
  // The checkpoint verify_now() proposed last, and when: calls while its verdict is still to
  // come, or within kVerifySpacing of it, share it, so that asking often cannot fill the log
  // (or push out the hashes kept for comparison).
  std::optional<std::pair<std::chrono::steady_clock::time_point, raft::Index>> recent_;
};

// The hash as /hash and /status show it: 16 hex digits.
std::string hash_hex(uint64_t hash);
// The other way; nullopt unless `text` is exactly 16 hex digits (it comes from a peer).
std::optional<uint64_t> parse_hash_hex(std::string_view text);

}  // namespace raftnginx::http
