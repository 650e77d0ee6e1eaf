// TestNetwork: raft cores wired together in one thread, for scenario tests a reader can follow.
//
// Each node is a RawNode over a MemoryStorage that stands for its disk. stabilize() handles every
// Ready (persist, apply, send) and delivers messages until the cluster is quiet. Filters drop
// messages to model partitions; nothing is random.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "raft/memory_storage.h"
#include "raft/raw_node.h"

namespace raftnginx::raft::testing {

// What a node's state machine holds: the applied commands, in order, with their indexes.
struct AppliedLog {
  std::vector<std::pair<Index, std::string>> commands;
  Index applied = 0;
};

class TestNetwork {
 public:
  // A cluster whose bootstrap membership is `voters` (and `learners`), all started.
  explicit TestNetwork(std::vector<NodeId> voters, std::vector<NodeId> learners = {},
                       std::function<void(Config&)> tweak = {});

  RawNode& node(NodeId id) { return *nodes_.at(id).core; }
  MemoryStorage& storage(NodeId id) { return *nodes_.at(id).storage; }
  const AppliedLog& applied(NodeId id) const { return nodes_.at(id).state; }
  std::vector<ReadState>& read_states(NodeId id) { return nodes_.at(id).read_states; }

  // Handles Readies and delivers messages until nothing is left to do.
  void stabilize();
  // Ticks one node n times, stabilizing after each tick.
  void tick(NodeId id, int n);
  // Makes `id` leader through normal elections (a few attempts) and stabilizes.
  void elect(NodeId id);
  // Proposes on `id` and stabilizes; returns the proposal's status.
  Status propose(NodeId id, std::string data);

  // Starts a node with an empty log and no membership (it learns it from the leader).
  void add_empty_node(NodeId id);
  // Loses the node's volatile state; its storage survives. restart() brings it back.
  void crash(NodeId id);
  void restart(NodeId id);
  // Takes a snapshot at the node's applied index, keeping `trailing` entries before it.
  void compact(NodeId id, uint64_t trailing = 0);

  // Drops every message for which the filter returns true (until clear_filters()).
  void add_filter(std::function<bool(const Message&)> drop) { filters_.push_back(std::move(drop)); }
  void isolate(NodeId id);
  void cut(NodeId a, NodeId b);
  void clear_filters() { filters_.clear(); }

  // Every message delivered so far, for assertions about what was said.
  const std::vector<Message>& delivered() const { return delivered_; }
  void clear_delivered() { delivered_.clear(); }

 private:
  struct Node {
    std::unique_ptr<MemoryStorage> storage;
    std::unique_ptr<RawNode> core;
    AppliedLog state;
    std::map<Index, AppliedLog> snapshots;
    std::vector<ReadState> read_states;
  };

  void start(NodeId id);
  // Returns whether there was anything to handle.
  bool handle_ready(NodeId id);
  bool dropped(const Message& m) const;

  std::map<NodeId, Node> nodes_;
  std::vector<Message> queue_;
  std::vector<Message> delivered_;
  std::vector<std::function<bool(const Message&)>> filters_;
  std::function<void(Config&)> tweak_;
};

}  // namespace raftnginx::raft::testing
