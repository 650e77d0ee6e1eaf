// The node runtime: three nodes in one process over LocalTransport, on real disks.
#include "node/node.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <random>
#include <set>
#include <sstream>

#include "audit_log.h"
#include "fsm/kv_command.h"
#include "fsm/memory_kv.h"
#include "fsm/rocksdb_kv.h"
#include "kv_commands.h"
#include "local_transport.h"
#include "temp_dir.h"
#include "transport/tcp_transport.h"

namespace raftnginx::node {
namespace {

using namespace std::chrono_literals;

enum class Net { kLocal, kTcp };

// A 3-node cluster whose state machines come from a factory, restartable node by node, over
// LocalTransport or over TCP on loopback ports picked at start.
class Cluster {
 public:
  using Factory = std::function<std::unique_ptr<fsm::StateMachine>(const std::string& dir)>;

  Cluster(Factory factory, uint64_t snapshot_threshold = 8192, Net net = Net::kLocal)
      : factory_(std::move(factory)), threshold_(snapshot_threshold), net_(net) {
    for (raft::NodeId id : {1, 2, 3}) {
      open_transport(id);
      contexts_[id] = net_ == Net::kTcp ? "raft=127.0.0.1:" + std::to_string(ports_[id]) : "";
    }
    for (raft::NodeId id : {1, 2, 3})
      start(id);
  }

  void open_transport(raft::NodeId id) {
    if (net_ == Net::kLocal) {
      transports_[id] = std::make_unique<transport::LocalTransport>(&hub_);
      return;
    }
    transport::TcpTransportOptions o;
    o.listen = "127.0.0.1:" + std::to_string(ports_[id]);
    auto t = transport::TcpTransport::start(o);
    ASSERT_TRUE(t.ok()) << t.status().to_string();
    ports_[id] = (*t)->port();
    transports_[id] = std::move(t).value();
  }
  ~Cluster() {
    for (auto& [id, n] : nodes_)
      n.reset();
  }

  // Starts node `id`: one of the initial three (bootstrapping on first start), or a new node
  // with an empty disk that waits to be added.
  void start(raft::NodeId id) {
    if (!transports_[id]) {
      open_transport(id);
      contexts_.try_emplace(
          id, net_ == Net::kTcp ? "raft=127.0.0.1:" + std::to_string(ports_[id]) : "");
    }
    NodeOptions o;
    o.id = id;
    o.data_dir = tmp_.sub("node" + std::to_string(id));
    o.tick = 10ms;
    o.election_ticks = 10;
    o.heartbeat_ticks = 1;
    o.snapshot_threshold = threshold_;
    o.trailing_logs = 10;
    if (id <= 3) {
      o.bootstrap =
          cluster::Membership::from(raft::ConfState{{1, 2, 3}, {}},
                                    {{1, contexts_[1]}, {2, contexts_[2]}, {3, contexts_[3]}});
    }
    auto node = Node::start(o, factory_(o.data_dir), transports_[id].get());
    ASSERT_TRUE(node.ok()) << node.status().to_string();
    nodes_[id] = std::move(node).value();
  }
  // Stops a node abruptly: no leadership handover, pending clients get errors.
  void kill(raft::NodeId id) {
    nodes_[id].reset();
    if (net_ == Net::kTcp)
      transports_[id].reset();  // a restarted process binds its port again
  }
  const std::string& context(raft::NodeId id) { return contexts_[id]; }
  bool up(raft::NodeId id) const { return nodes_.at(id) != nullptr; }
  Node& node(raft::NodeId id) { return *nodes_.at(id); }
  transport::LocalHub& hub() { return hub_; }

  // The node every live node agrees leads, waiting up to `timeout`.
  raft::NodeId wait_for_leader(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& [id, n] : nodes_) {
        if (n && n->status().raft.role == raft::Role::kLeader)
          return id;
      }
      std::this_thread::sleep_for(5ms);
    }
    return raft::kNoNode;
  }

  // Proposes on whichever node leads, retrying through elections; the result once applied.
  Result<Outcome> write(const std::string& command, const std::string& request_id = {},
                        std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Status last = Status::unavailable("no leader");
    while (std::chrono::steady_clock::now() < deadline) {
      const raft::NodeId leader =
          wait_for_leader(deadline - std::chrono::steady_clock::now() > 0ms
                              ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                              : 0ms);
      if (leader == raft::kNoNode || !up(leader))
        continue;
      auto done = std::make_shared<std::promise<Result<Outcome>>>();
      auto fut = done->get_future();
      node(leader).propose(command, request_id,
                           [done](Result<Outcome> r) { done->set_value(std::move(r)); });
      if (fut.wait_for(2s) != std::future_status::ready) {
        last = Status::unavailable("timed out");
        continue;
      }
      auto r = fut.get();
      if (r.ok())
        return r;
      last = r.status();
      std::this_thread::sleep_for(10ms);
    }
    return last;
  }

  // Waits until every live node has applied the same index, at least `at_least`, and that
  // held still across two looks (statuses are published once per turn of each raft loop).
  bool wait_converged(raft::Index at_least = 1, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int stable = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      std::set<raft::Index> applied;
      for (auto& [id, n] : nodes_) {
        if (n)
          applied.insert(n->status().applied);
      }
      stable = applied.size() == 1 && *applied.begin() >= at_least ? stable + 1 : 0;
      if (stable == 2)
        return true;
      std::this_thread::sleep_for(30ms);
    }
    return false;
  }

 private:
  raftnginx::testing::TempDir tmp_;
  transport::LocalHub hub_;
  std::map<raft::NodeId, uint16_t> ports_;
  std::map<raft::NodeId, std::string> contexts_;
  std::map<raft::NodeId, std::unique_ptr<transport::Transport>> transports_;
  std::map<raft::NodeId, std::unique_ptr<Node>> nodes_;
  Factory factory_;
  uint64_t threshold_;
  Net net_;
};

using raftnginx::testing::set_cmd;

std::string get(Node& n, const std::string& key) {
  auto v = static_cast<fsm::KvStore&>(n.state_machine()).get(key);
  return v.ok() && v->has_value() ? (*v)->value : "<missing>";
}

class NodeOverNet : public ::testing::TestWithParam<Net> {};

TEST_P(NodeOverNet, WriteOnLeaderIsReadOnEveryNode) {
  Cluster c(
      [](const std::string& dir) {
        EXPECT_TRUE(storage::Env::posix()->create_dirs(dir).ok());
        return std::move(fsm::RocksDbKv::open(dir + "/kv")).value();
      },
      8192, GetParam());
  ASSERT_TRUE(c.write(set_cmd("user1", "batman")).ok());
  ASSERT_TRUE(c.wait_converged());
  for (raft::NodeId id : {1, 2, 3})
    EXPECT_EQ(get(c.node(id), "user1"), "batman") << "node " << id;
}

// A checkpoint makes every node record its state hash at the same point of the log: equal on
// replicas that applied the same commands, whatever the backend (the audit log opts in too).
TEST(PreferredLeader, TheFirstReadyMemberRankedAboveTheLeaderIsChosen) {
  // Leader 3 of voters 1, 2, 3; the operators prefer 1, then 2.
  raft::NodeStatus st;
  st.id = 3;
  st.role = raft::Role::kLeader;
  st.last_index = 100;
  st.peers = {{1, true, 100, 101, raft::Progress::State::kReplicate, true},
              {2, true, 100, 101, raft::Progress::State::kReplicate, true},
              {3, true, 100, 101, raft::Progress::State::kReplicate, true}};
  const std::vector<raft::NodeId> order = {1, 2};
  EXPECT_EQ(cluster::preferred_transfer_target(st, order), 1u);
  st.peers[0].match_index = 99;  // 1 is behind: the next one
  EXPECT_EQ(cluster::preferred_transfer_target(st, order), 2u);
  st.peers[1].recent_active = false;  // 2 is not heard from: nobody
  EXPECT_EQ(cluster::preferred_transfer_target(st, order), raft::kNoNode);
  st.peers[1].recent_active = true;
  // Ranked above the ready ones, the leader stays; so does one already handing over, or a
  // follower, or a learner that is preferred.
  EXPECT_EQ(cluster::preferred_transfer_target(st, {3, 2}), raft::kNoNode);
  st.lead_transferee = 2;
  EXPECT_EQ(cluster::preferred_transfer_target(st, order), raft::kNoNode);
  st.lead_transferee = raft::kNoNode;
  st.peers[1].voter = false;
  EXPECT_EQ(cluster::preferred_transfer_target(st, order), raft::kNoNode);
  st.peers[1].voter = true;
  st.role = raft::Role::kFollower;
  EXPECT_EQ(cluster::preferred_transfer_target(st, order), raft::kNoNode);
}

TEST(Node, CheckpointsRecordTheSameHashOnEveryReplica) {
  storage::Env* env = storage::Env::posix();
  for (bool audit : {false, true}) {
    Cluster c([env, audit](const std::string& dir) -> std::unique_ptr<fsm::StateMachine> {
      if (!audit)
        return std::make_unique<fsm::MemoryKv>();
      EXPECT_TRUE(env->create_dirs(dir).ok());
      return std::move(examples::AuditLog::open(env, dir + "/audit.log")).value();
    });
    const raft::NodeId leader = c.wait_for_leader();
    ASSERT_NE(leader, raft::kNoNode);
    for (int i = 0; i < 10; ++i)
      ASSERT_TRUE(
          c.write(audit ? "line-" + std::to_string(i) : set_cmd("k" + std::to_string(i), "v"))
              .ok());
    std::promise<Result<Outcome>> proposed;
    c.node(leader).propose_checkpoint([&](Result<Outcome> r) { proposed.set_value(r); });
    auto checkpoint = proposed.get_future().get();
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().to_string();
    ASSERT_TRUE(c.wait_converged(checkpoint->index));
    const std::optional<uint64_t> expected = c.node(leader).checkpoint_hash(checkpoint->index);
    ASSERT_TRUE(expected.has_value());
    EXPECT_EQ(expected, c.node(leader).state_machine().state_hash());
    for (raft::NodeId id : {1, 2, 3}) {
      EXPECT_EQ(c.node(id).checkpoint_hash(checkpoint->index), expected) << "node " << id;
      EXPECT_EQ(c.node(id).status().checkpoint_index, checkpoint->index);
    }
    EXPECT_FALSE(c.node(leader).checkpoint_hash(checkpoint->index - 1).has_value());
  }
}

TEST(Node, FollowerRefusesProposalNamingLeader) {
  Cluster c([](const std::string&) { return std::make_unique<fsm::MemoryKv>(); });
  const raft::NodeId leader = c.wait_for_leader();
  ASSERT_NE(leader, raft::kNoNode);
  ASSERT_TRUE(c.write(set_cmd("k", "v")).ok());
  const raft::NodeId follower = leader == 1 ? 2 : 1;
  std::promise<Result<Outcome>> done;
  c.node(follower).propose(set_cmd("k", "x"), {}, [&](Result<Outcome> r) { done.set_value(r); });
  auto r = done.get_future().get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kNotLeader);
}

TEST(Node, LinearizableReadOnFollowerSeesLatestWrite) {
  Cluster c([](const std::string&) { return std::make_unique<fsm::MemoryKv>(); });
  const raft::NodeId leader = c.wait_for_leader();
  const raft::NodeId follower = leader == 1 ? 2 : 1;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(c.write(set_cmd("counter", std::to_string(i))).ok());
    // A read the leader did not confirm in time (an election on a loaded machine) is refused as
    // Unavailable and retried, as a client would; it is never answered with an older value.
    Status read;
    for (int attempt = 0; attempt < 20; ++attempt) {
      std::promise<Status> done;
      c.node(follower).read_barrier([&](Status s) { done.set_value(s); });
      read = done.get_future().get();
      if (read.code() != Status::Code::kUnavailable)
        break;
    }
    ASSERT_TRUE(read.ok()) << read.to_string();
    ASSERT_EQ(get(c.node(follower), "counter"), std::to_string(i));
  }
}

// A restarted node with the volatile backend is rebuilt from its snapshot plus the log.
TEST(Node, MemoryBackendIsRebuiltAfterRestart) {
  Cluster c([](const std::string&) { return std::make_unique<fsm::MemoryKv>(); }, 20);
  for (int i = 0; i < 60; ++i)
    ASSERT_TRUE(c.write(set_cmd("k" + std::to_string(i), "v")).ok());
  ASSERT_TRUE(c.wait_converged());
  const raft::NodeId victim = c.wait_for_leader() == 3 ? 2 : 3;
  c.kill(victim);
  c.start(victim);
  ASSERT_TRUE(c.wait_converged());
  EXPECT_EQ(get(c.node(victim), "k59"), "v");
  EXPECT_EQ(get(c.node(victim), "k0"), "v");
  EXPECT_GT(c.node(victim).status().snapshot_index, 0u);
}

// Every committed command reaches each node's state machine exactly once, across 50 abrupt
// restarts (the leader included) under a steady stream of writes, and with snapshots taken
// and installed along the way.
TEST_P(NodeOverNet, ExactlyOnceAcrossRestarts) {
  storage::Env* env = storage::Env::posix();
  Cluster c(
      [env](const std::string& dir) {
        EXPECT_TRUE(env->create_dirs(dir).ok());
        return std::move(examples::AuditLog::open(env, dir + "/audit.log")).value();
      },
      /*snapshot_threshold=*/40, GetParam());
  std::atomic<bool> writing{true};
  std::atomic<int> acknowledged{0};
  std::mutex cluster_mu;  // the writer and the killer share the cluster
  std::thread writer([&] {
    for (int i = 0; writing; ++i) {
      std::unique_lock lock(cluster_mu);
      const raft::NodeId leader = c.wait_for_leader(50ms);
      if (leader == raft::kNoNode || !c.up(leader)) {
        lock.unlock();
        std::this_thread::sleep_for(5ms);
        continue;
      }
      auto done = std::make_shared<std::promise<bool>>();
      c.node(leader).propose("write-" + std::to_string(i), "req-" + std::to_string(i),
                             [done](Result<Outcome> r) { done->set_value(r.ok()); });
      lock.unlock();
      auto fut = done->get_future();
      if (fut.wait_for(3s) == std::future_status::ready && fut.get())
        ++acknowledged;
    }
  });
  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    // Writes go on between restarts: wait for one more acknowledgement (bounded, so that a
    // stuck cluster fails the checks below instead of hanging).
    const int before = acknowledged.load();
    const auto progress_deadline = std::chrono::steady_clock::now() + 3s;
    while (acknowledged.load() == before && std::chrono::steady_clock::now() < progress_deadline)
      std::this_thread::sleep_for(5ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 60));
    std::lock_guard lock(cluster_mu);
    raft::NodeId victim = static_cast<raft::NodeId>(1 + rng() % 3);
    if (round % 3 == 0) {
      const raft::NodeId leader = c.wait_for_leader(0ms);
      if (leader != raft::kNoNode)
        victim = leader;
    }
    c.kill(victim);
    c.start(victim);
  }
  std::this_thread::sleep_for(200ms);
  writing = false;
  writer.join();
  ASSERT_GT(acknowledged.load(), 50);
  auto final_write = c.write("final", "final");
  ASSERT_TRUE(final_write.ok());
  // The audit log answers with the index it wrote the command at.
  ASSERT_TRUE(c.wait_converged(std::stoull(final_write->result.value), 20s));

  std::vector<std::string> trails;
  for (raft::NodeId id : {1, 2, 3}) {
    auto text = static_cast<examples::AuditLog&>(c.node(id).state_machine()).contents();
    ASSERT_TRUE(text.ok());
    std::istringstream in(*text);
    std::string line;
    raft::Index prev = 0;
    size_t lines = 0;
    while (std::getline(in, line)) {
      const raft::Index index = std::stoull(line);
      ASSERT_GT(index, prev) << "node " << id << " applied index " << index
                             << " twice or out of order";
      prev = index;
      ++lines;
    }
    EXPECT_GE(lines, static_cast<size_t>(acknowledged.load())) << "node " << id;
    trails.push_back(*text);
  }
  EXPECT_EQ(trails[0], trails[1]);
  EXPECT_EQ(trails[0], trails[2]);
  // Snapshots were taken along the way (and the logs compacted behind them).
  for (raft::NodeId id : {1, 2, 3})
    EXPECT_GT(c.node(id).status().snapshot_index, 0u) << "node " << id;
}

// Exactly-once belongs to the node, not the backend: the audit log example knows nothing of
// request ids, and still applies a retried request once, across a restart of every node (which
// rebuilds the table from the log: the first result is then no longer known), while an id reused
// for another request is refused.
TEST(Node, RetriedRequestIsAppliedOnceForAnyBackend) {
  storage::Env* env = storage::Env::posix();
  Cluster c([env](const std::string& dir) {
    EXPECT_TRUE(env->create_dirs(dir).ok());
    return std::move(examples::AuditLog::open(env, dir + "/audit.log")).value();
  });
  auto first = c.write("payment 42", "req-1");
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->duplicate);
  auto retry = c.write("payment 42", "req-1");
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_TRUE(retry->result_known);
  EXPECT_EQ(retry->index, first->index);
  EXPECT_EQ(retry->result.value, first->result.value);
  auto reuse = c.write("payment 43", "req-1");
  ASSERT_TRUE(reuse.ok());
  EXPECT_EQ(reuse->result.status.code(), Status::Code::kConflict);
  ASSERT_TRUE(c.write("other", "req-2").ok());
  for (raft::NodeId id : {1, 2, 3}) {
    c.kill(id);
    c.start(id);
  }
  auto after_restart = c.write("payment 42", "req-1");
  ASSERT_TRUE(after_restart.ok());
  EXPECT_TRUE(after_restart->duplicate);
  EXPECT_EQ(after_restart->index, first->index);
  ASSERT_TRUE(c.wait_converged(after_restart->index));
  for (raft::NodeId id : {1, 2, 3}) {
    auto text = static_cast<examples::AuditLog&>(c.node(id).state_machine()).contents();
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(std::count(text->begin(), text->end(), '\n'), 2) << "node " << id << ":\n" << *text;
  }
}

// SIGTERM on the leader: leadership moves to a caught-up follower at once, without waiting for
// an election timeout, and writes go on.
TEST_P(NodeOverNet, GracefulShutdownOfLeaderHandsOverLeadership) {
  Cluster c([](const std::string&) { return std::make_unique<fsm::MemoryKv>(); }, 8192, GetParam());
  ASSERT_TRUE(c.write(set_cmd("before", "1")).ok());
  const raft::NodeId old_leader = c.wait_for_leader();
  const raft::Term old_term = c.node(old_leader).status().raft.hard_state.term;
  c.node(old_leader).shutdown(2s);
  // It stopped only after it saw another node lead: without the handover it would still have
  // believed itself leader (its followers wait an election timeout before replacing it).
  const raft::NodeId successor = c.node(old_leader).status().raft.leader;
  EXPECT_NE(successor, old_leader);
  EXPECT_NE(successor, raft::kNoNode);
  c.kill(old_leader);
  const raft::NodeId new_leader = c.wait_for_leader(2s);
  ASSERT_NE(new_leader, raft::kNoNode);
  EXPECT_NE(new_leader, old_leader);
  // A transfer is one election, not a cascade of timeouts.
  EXPECT_EQ(c.node(new_leader).status().raft.hard_state.term, old_term + 1);
  ASSERT_TRUE(c.write(set_cmd("after", "2")).ok());
}

// A follower that was down while the others compacted their logs catches up by snapshot; so
// does a brand-new node added as a learner, which then serves the same state.
TEST_P(NodeOverNet, LaggingAndNewNodesCatchUpBySnapshot) {
  Cluster c(
      [](const std::string& dir) {
        EXPECT_TRUE(storage::Env::posix()->create_dirs(dir).ok());
        return std::move(fsm::RocksDbKv::open(dir + "/kv")).value();
      },
      /*snapshot_threshold=*/20, GetParam());
  ASSERT_TRUE(c.write(set_cmd("first", "1")).ok());
  const raft::NodeId leader = c.wait_for_leader();
  const raft::NodeId lagging = leader == 3 ? 2 : 3;
  c.kill(lagging);
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(c.write(set_cmd("k" + std::to_string(i), std::string(1000, 'x'))).ok());
  c.start(lagging);
  auto last = c.write(set_cmd("last", "1"));
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE(c.wait_converged());
  EXPECT_GE(c.node(lagging).status().snapshots_installed, 1u);
  EXPECT_EQ(get(c.node(lagging), "k99"), std::string(1000, 'x'));

  c.start(4);
  std::promise<Result<Outcome>> added;
  c.node(c.wait_for_leader())
      .change_membership(raft::ConfChange{raft::ConfChangeType::kAddLearner, 4, c.context(4)},
                         [&](Result<Outcome> r) { added.set_value(std::move(r)); });
  ASSERT_TRUE(added.get_future().get().ok());
  ASSERT_TRUE(c.write(set_cmd("after-join", "1")).ok());
  ASSERT_TRUE(c.wait_converged());
  EXPECT_GE(c.node(4).status().snapshots_installed, 1u);
  EXPECT_EQ(get(c.node(4), "first"), "1");
  EXPECT_EQ(get(c.node(4), "after-join"), "1");
  EXPECT_TRUE(c.node(4).status().raft.conf.learners.count(4));
}

INSTANTIATE_TEST_SUITE_P(Transports, NodeOverNet, ::testing::Values(Net::kLocal, Net::kTcp),
                         [](const auto& info) {
                           return info.param == Net::kTcp ? "Tcp" : "Local";
                         });

}  // namespace
}  // namespace raftnginx::node
