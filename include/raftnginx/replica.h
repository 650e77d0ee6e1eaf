// Replica: what a backend's code may ask of the node it runs on: propose a command, wait for a
// linearizable read barrier, and see where the node stands. Public (docs/api.md).
//
// Threads: every method is thread-safe and returns at once; `done` callbacks run later on the
// node's raft loop thread, and must return quickly, without blocking.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "raftnginx/state_machine.h"
#include "raftnginx/status.h"
#include "raftnginx/types.h"

namespace raftnginx {

// What became of a command that was applied.
struct Outcome {
  raft::Index index = 0;  // the entry that applied it (a retry: the first request's entry)
  fsm::ApplyResult result;
  bool duplicate = false;  // a retried request id, answered from the node's session table
  // False for a retry whose first result only the backend's files held before a restart.
  bool result_known = true;
};

// Where a node stands, as an operator sees it in /status.
struct ReplicaStatus {
  std::string id;    // this node's name
  std::string role;  // "leader", "follower", "candidate" or "learner"
  raft::Term term = 0;
  std::string leader;       // the leader's name; empty if none is known
  std::string leader_http;  // the leader's HTTP address, if known
  raft::Index commit_index = 0;
  raft::Index applied_index = 0;
};

class Replica {
 public:
  virtual ~Replica() = default;

  // Proposes `command` for the state machine with a client's `request_id` (may be empty: then a
  // retry is a new command). `done` gets the outcome once it is applied on this node, or why
  // not: NotLeader, Busy (not committed; retry), OutcomeUnknown (may have committed: retry with
  // the same request id, and it is applied once).
  virtual void propose(std::string command, std::string request_id,
                       std::function<void(Result<Outcome>)> done) = 0;
  // A linearizable read barrier (ReadIndex): `done` gets ok once this node's state machine
  // reflects every write committed before the call.
  virtual void read_barrier(std::function<void(Status)> done) = 0;
  virtual ReplicaStatus replica_status() const = 0;
  // The last index applied to the state machine: a stale read sees at least this.
  virtual raft::Index applied_index() const = 0;
  // When this node last heard from its leader (now, on the leader): how stale a read may be.
  virtual std::chrono::steady_clock::time_point leader_contact() const = 0;
};

}  // namespace raftnginx
