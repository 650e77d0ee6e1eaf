#include "test_network.h"

#include <stdexcept>

namespace raftnginx::raft::testing {

TestNetwork::TestNetwork(std::vector<NodeId> voters, std::vector<NodeId> learners,
                         std::function<void(Config&)> tweak)
    : tweak_(std::move(tweak)) {
  ConfState conf;
  conf.voters.insert(voters.begin(), voters.end());
  conf.learners.insert(learners.begin(), learners.end());
  for (NodeId id : conf.voters)
    nodes_[id].storage = std::make_unique<MemoryStorage>(conf);
  for (NodeId id : conf.learners)
    nodes_[id].storage = std::make_unique<MemoryStorage>(conf);
  for (auto& [id, n] : nodes_)
    start(id);
}

void TestNetwork::start(NodeId id) {
  Node& n = nodes_.at(id);
  Config c;
  c.id = id;
  c.election_tick = 10;
  c.heartbeat_tick = 1;
  c.random_seed = id;
  c.applied = n.state.applied;
  // Scenarios elect leaders on demand; a leader lease would make followers ignore them. Tests of
  // check-quorum turn it back on through `tweak`.
  c.check_quorum = false;
  if (tweak_)
    tweak_(c);
  auto core = RawNode::create(c, *n.storage);
  if (!core.ok())
    throw std::runtime_error(core.status().to_string());
  n.core = std::move(core).value();
}

void TestNetwork::add_empty_node(NodeId id) {
  nodes_[id].storage = std::make_unique<MemoryStorage>();
  start(id);
}

void TestNetwork::crash(NodeId id) {
  nodes_.at(id).core.reset();
}

void TestNetwork::restart(NodeId id) {
  Node& n = nodes_.at(id);
  // A volatile state machine is rebuilt from the latest snapshot.
  Index snap = n.storage->snapshot()->index;
  n.state = snap ? n.snapshots.at(snap) : AppliedLog{};
  start(id);
}

void TestNetwork::compact(NodeId id, uint64_t trailing) {
  Node& n = nodes_.at(id);
  n.snapshots[n.state.applied] = n.state;
  Status s = n.storage->create_snapshot(n.state.applied, n.core->conf(), trailing);
  if (!s.ok())
    throw std::runtime_error(s.to_string());
}

bool TestNetwork::handle_ready(NodeId id) {
  Node& n = nodes_.at(id);
  if (!n.core || !n.core->has_ready())
    return false;
  Ready rd = n.core->ready();
  if (rd.snapshot) {
    // The "stream": the sender's snapshot data is looked up on whichever node holds it.
    for (auto& [other_id, other] : nodes_) {
      auto it = other.snapshots.find(rd.snapshot->index);
      if (it != other.snapshots.end()) {
        n.state = it->second;
        n.snapshots[rd.snapshot->index] = it->second;
        break;
      }
    }
    n.storage->apply_snapshot(*rd.snapshot);
  }
  n.storage->append(rd.entries);
  if (rd.hard_state)
    n.storage->set_hard_state(*rd.hard_state);
  for (Message& m : rd.messages)
    queue_.push_back(std::move(m));
  for (const Entry& e : rd.committed_entries) {
    if (e.type == EntryType::kNormal && !e.data.empty())
      n.state.commands.emplace_back(e.index, e.data.str());
    n.state.applied = e.index;
  }
  if (rd.snapshot)
    n.state.applied = std::max(n.state.applied, rd.snapshot->index);
  for (ReadState& r : rd.read_states)
    n.read_states.push_back(std::move(r));
  n.core->advance();
  return true;
}

bool TestNetwork::dropped(const Message& m) const {
  for (const auto& f : filters_) {
    if (f(m))
      return true;
  }
  return false;
}

void TestNetwork::stabilize() {
  for (int round = 0; round < 10000; ++round) {
    bool busy = false;
    for (auto& [id, n] : nodes_)
      busy |= handle_ready(id);
    std::vector<Message> batch = std::exchange(queue_, {});
    for (Message& m : batch) {
      busy = true;
      auto it = nodes_.find(m.to);
      if (it == nodes_.end() || !it->second.core || dropped(m))
        continue;
      delivered_.push_back(m);
      Status s = it->second.core->step(std::move(m));
      if (!s.ok())
        throw std::runtime_error(s.to_string());
    }
    if (!busy)
      return;
  }
  throw std::runtime_error("cluster did not stabilize");
}

void TestNetwork::tick(NodeId id, int n) {
  for (int i = 0; i < n; ++i) {
    nodes_.at(id).core->tick();
    stabilize();
  }
}

void TestNetwork::elect(NodeId id) {
  // A refusal teaches the candidate a higher term; a later campaign may then win.
  for (int attempt = 0; attempt < 5 && node(id).role() != Role::kLeader; ++attempt) {
    node(id).campaign();
    stabilize();
  }
  if (node(id).role() != Role::kLeader) {
    throw std::runtime_error("node " + std::to_string(id) + " did not win the election");
  }
}

Status TestNetwork::propose(NodeId id, std::string data) {
  auto r = node(id).propose(std::move(data));
  stabilize();
  return r.status();
}

void TestNetwork::isolate(NodeId id) {
  add_filter([id](const Message& m) { return m.from == id || m.to == id; });
}

void TestNetwork::cut(NodeId a, NodeId b) {
  add_filter([a, b](const Message& m) {
    return (m.from == a && m.to == b) || (m.from == b && m.to == a);
  });
}

}  // namespace raftnginx::raft::testing
