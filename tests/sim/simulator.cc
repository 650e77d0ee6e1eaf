#include "simulator.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "node/inbound.h"
#include "node/ready_pipeline.h"
#include "raft/memory_storage.h"
#include "raft/random.h"
#include "raft/raw_node.h"

namespace raftnginx::raft::sim {
namespace {

namespace rn = ::raftnginx::node;

constexpr uint64_t kTickMs = 10;

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdULL;
}

uint64_t hash_entry(const Entry& e) {
  uint64_t h = 0xcbf29ce484222325ULL ^ static_cast<uint64_t>(e.type);
  for (unsigned char c : e.data.view())
    h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// The simulated state machine: how far it applied and a digest of everything it applied.
struct AppState {
  Index applied = 0;
  uint64_t digest = 0;
};

struct Read {
  Index mark = 0;  // the highest commit index anywhere when the read began
  std::optional<Index> read_index;
};

class Simulation;
struct Node;

// The simulated disk, network and state machine, as the node's own ReadyPipeline sees them.
class SimSink final : public rn::ReadySink {
 public:
  SimSink(Simulation* sim, Node* node) : sim_(sim), node_(node) {}
  const HardState& stored_hard_state() const override;
  Index stored_last_index() const override;
  Status save(const std::vector<Entry>& entries, const std::optional<HardState>& hard_state,
              bool sync) override;
  Status install_snapshot(const SnapshotMeta& meta) override;
  void send(std::vector<Message> messages) override;
  void send_snapshot(Message m) override;
  Status apply(std::span<const Entry> committed) override;
  void read_states(std::vector<ReadState> states) override;

 private:
  Simulation* sim_;
  Node* node_;
};

// Time as the pipeline reads it: the simulation's clock.
class SimClock final : public Clock {
 public:
  explicit SimClock(const uint64_t* now_ms) : now_ms_(now_ms) {}
  time_point now() const override { return time_point(std::chrono::milliseconds(*now_ms_)); }
  uint64_t wall_ms() const override { return *now_ms_; }

 private:
  const uint64_t* now_ms_;
};

struct Node {
  NodeId id = kNoNode;
  bool up = false;
  uint64_t incarnation = 0;
  // Durable: survives crashes.
  std::unique_ptr<MemoryStorage> disk;
  std::map<Index, AppState> disk_snapshots;
  std::vector<uint64_t> prefix;  // prefix[i]: digest of the durable log up to index i
  Term durable_term = 0;
  uint64_t compact_every = 100;
  // Volatile: lost on crash.
  std::unique_ptr<RawNode> core;
  std::unique_ptr<SimSink> sink;
  std::unique_ptr<rn::ReadyPipeline> pipeline;
  // Begun (messages may be out, entries applied), written to the "disk", not yet durable.
  std::optional<rn::ReadyPipeline::InFlight> pending;
  AppState app;
  Term applied_term = 0;  // term of the last entry applied
  std::map<Index, AppState> incoming_snapshots;
  std::map<std::string, Read> reads;
  Index last_commit = 0;
  // Durable state machines (like the RocksDB backend) keep what they applied across a crash; the
  // others are rebuilt from the latest snapshot plus the log.
  bool durable_app = false;
  // The hard state as of the last fsync: a Ready that changed only the commit index need not be
  // synced, and a crash may lose it.
  HardState synced_hs;
};

enum class EventType : uint8_t {
  kTick,
  kDeliver,
  kDiskDone,
  kNemesis,
  kHealPartition,
  kCrash,
  kRestart,
  kWrite,
  kRead
};

struct Event {
  explicit Event(EventType t, NodeId n = kNoNode, uint64_t inc = 0, uint64_t gen = 0)
      : type(t), node(n), incarnation(inc), generation(gen) {}

  EventType type;
  NodeId node = kNoNode;
  uint64_t incarnation = 0;
  uint64_t generation = 0;
  Message msg;
  std::optional<AppState> snapshot_data;
};

// Facts every node's history must agree with, gathered as the run goes.
struct AppliedRecord {
  Term term;
  uint64_t entry_hash;
  uint64_t digest;
};

class Simulation {
 public:
  Simulation(const SimOptions& options, const std::function<void(const std::string&)>& sink)
      : clock_(&now_),
        opt_(options),
        sink_(sink),
        net_rng_(options.seed * 3 + 1),
        nemesis_rng_(options.seed * 5 + 2),
        client_rng_(options.seed * 7 + 3),
        disk_rng_(options.seed * 11 + 4) {}

  SimResult run();

 private:
  friend class SimSink;
  SimClock clock_;
  // Scheduling.
  void schedule(uint64_t delay_ms, Event e) {
    queue_.emplace(std::make_pair(now_ + delay_ms, seq_++), std::move(e));
  }
  void handle(Event& e);
  void trace(const std::string& line) {
    if (opt_.trace && sink_)
      sink_("t=" + std::to_string(now_) + "ms " + line);
  }
  void violation(const std::string& what) {
    if (result_.violations.empty())
      trace("VIOLATION: " + what);
    result_.violations.push_back("t=" + std::to_string(now_) + "ms: " + what);
  }

  // Nodes.
  void start_node(NodeId id, const ConfState* bootstrap);
  void boot_core(Node& n);
  void crash(NodeId id);
  void restart(NodeId id);
  void process(Node& n);
  void complete_ready(Node& n);
  void apply(Node& n, const Entry& e);
  void install_snapshot(Node& n, const SnapshotMeta& meta);
  void persist(Node& n, const std::vector<Entry>& entries, const std::optional<HardState>& hs,
               bool sync);
  void persist_entries(Node& n, const std::vector<Entry>& entries);
  void check_read_states(Node& n, const std::vector<ReadState>& states);
  void serve_reads(Node& n);
  void maybe_compact(Node& n);
  Node* node(NodeId id) {
    auto it = nodes_.find(id);
    return it == nodes_.end() ? nullptr : &it->second;
  }
  Node* leader();
  std::vector<NodeId> up_nodes();

  // Network.
  void send(Node& from, Message m);
  bool blocked(NodeId from, NodeId to) const { return cut_.count({from, to}) > 0; }

  // Workload and faults.
  void client_write();
  void client_read();
  void nemesis();
  void partition();
  void change_membership();
  void forge();
  void heal_all();

  // Checks.
  void observe_ready(Node& n, const Ready& rd);
  void check_leader_completeness(Node& n, const Ready& rd);
  Index commit_high_water();
  bool liveness_reached();
  void final_checks();

  const SimOptions opt_;
  const std::function<void(const std::string&)>& sink_;
  Random net_rng_;
  Random nemesis_rng_;
  Random client_rng_;
  Random disk_rng_;
  uint64_t now_ = 0;
  uint64_t seq_ = 0;
  std::map<std::pair<uint64_t, uint64_t>, Event> queue_;
  std::map<NodeId, Node> nodes_;
  ConfState initial_;
  NodeId next_id_ = 0;  // the next fresh node id for a node that joins
  int election_tick_ = 10;
  int heartbeat_tick_ = 1;
  bool pre_vote_ = true;
  bool check_quorum_ = true;

  // Network conditions.
  std::set<std::pair<NodeId, NodeId>> cut_;
  uint64_t partition_generation_ = 0;
  uint64_t loss_percent_ = 0;
  uint64_t dup_percent_ = 0;
  uint64_t max_delay_ms_ = 5;
  // Links are FIFO, as TCP connections are, unless the nemesis turns reordering on.
  bool reorder_ = false;
  std::map<std::pair<NodeId, NodeId>, uint64_t> link_busy_until_;
  size_t max_msg_entries_ = 64;
  size_t max_inflight_msgs_ = 16;

  // Workload bookkeeping.
  uint64_t write_counter_ = 0;
  uint64_t read_counter_ = 0;
  struct ProposalKey {
    NodeId node;
    uint64_t incarnation;
    Index index;
    auto operator<=>(const ProposalKey&) const = default;
  };
  struct Proposal {
    Term term;
    std::string value;
    uint64_t proposed_at;
  };
  std::map<ProposalKey, Proposal> proposals_;
  std::map<Index, uint64_t> acked_;  // acknowledged writes: index -> hash of the command

  // History.
  std::vector<std::optional<AppliedRecord>> applied_;  // by index: what was applied there
  std::vector<Term> commit_term_;                      // by index: term in which it committed
  std::vector<Term> committed_entry_term_;             // by index: term of the committed entry
  std::map<std::pair<Index, Term>, uint64_t> log_prefix_;
  std::map<Term, NodeId> leader_of_term_;

  bool healing_ = false;
  uint64_t healed_at_ = 0;
  bool probe_acked_ = false;
  SimResult result_;
};

// ---------------------------------------------------------------------------------------------
// Nodes

void Simulation::start_node(NodeId id, const ConfState* bootstrap) {
  Node& n = nodes_[id];
  n.id = id;
  n.disk =
      bootstrap ? std::make_unique<MemoryStorage>(*bootstrap) : std::make_unique<MemoryStorage>();
  n.compact_every = 20 + disk_rng_.uniform(300);
  n.durable_app = disk_rng_.uniform(2) == 0;
  n.prefix.assign(1, 0);
  if (bootstrap) {
    BootstrapState boot = bootstrap_state(*bootstrap);
    persist_entries(n, boot.entries);
    n.durable_term = boot.hard_state.term;
    n.synced_hs = boot.hard_state;
  }
  boot_core(n);
  schedule(1 + net_rng_.uniform(kTickMs), Event{EventType::kTick, id, n.incarnation});
}

void Simulation::boot_core(Node& n) {
  const Index snap = n.disk->snapshot()->index;
  if (!n.durable_app || n.app.applied < snap) {
    n.app = snap ? n.disk_snapshots.at(snap) : AppState{};
    n.applied_term = n.disk->snapshot()->term;
  }
  Config c;
  c.id = n.id;
  c.election_tick = election_tick_;
  c.heartbeat_tick = heartbeat_tick_;
  c.pre_vote = pre_vote_;
  c.check_quorum = check_quorum_;
  c.applied = n.app.applied;
  c.random_seed = opt_.seed * 1000003 + n.id * 7919 + n.incarnation;
  // Small messages and windows split replication into many steps, where ordering bugs hide.
  c.max_msg_entries = max_msg_entries_;
  c.max_inflight_msgs = max_inflight_msgs_;
  c.max_uncommitted_bytes = 8 << 10;
  auto core = RawNode::create(c, *n.disk);
  if (!core.ok()) {
    violation("node " + std::to_string(n.id) + " cannot start: " + core.status().to_string());
    return;
  }
  n.core = std::move(core).value();
  n.sink = std::make_unique<SimSink>(this, &n);
  n.pipeline = std::make_unique<rn::ReadyPipeline>(n.core.get(), n.sink.get(), &clock_);
  n.up = true;
  n.last_commit = n.disk->hard_state().commit;
}

void Simulation::crash(NodeId id) {
  Node& n = nodes_.at(id);
  trace("CRASH node " + std::to_string(id) + (n.pending ? " (losing an unsynced Ready)" : ""));
  n.up = false;
  n.pending.reset();
  n.pipeline.reset();
  n.sink.reset();
  n.core.reset();
  if (!n.durable_app)
    n.app = AppState{};
  if (n.disk->hard_state() != n.synced_hs && disk_rng_.uniform(2) == 0) {
    trace("node " + std::to_string(id) + " loses its unsynced commit index");
    n.disk->set_hard_state(n.synced_hs);
  }
  n.incoming_snapshots.clear();
  n.reads.clear();
  ++n.incarnation;
}

void Simulation::restart(NodeId id) {
  Node& n = nodes_.at(id);
  if (n.up)
    return;
  trace("RESTART node " + std::to_string(id));
  boot_core(n);
  schedule(1 + net_rng_.uniform(kTickMs), Event{EventType::kTick, id, n.incarnation});
  process(n);
}

void Simulation::process(Node& n) {
  while (n.up && !n.pending && n.core->has_ready()) {
    Ready rd = n.core->ready();
    observe_ready(n, rd);
    const bool needs_disk = !rd.entries.empty() || rd.hard_state || rd.snapshot;
    // The node's own pipeline: a snapshot is installed, a leader's appends go out and its
    // already durable entries are applied, all before this Ready's write completes.
    auto begun = n.pipeline->begin(std::move(rd));
    if (!begun.ok()) {
      violation("node " + std::to_string(n.id) + " failed a Ready: " + begun.status().to_string());
      return;
    }
    n.pending = std::move(begun).value();
    if (!needs_disk) {
      complete_ready(n);
      continue;
    }
    // Now and then the node dies inside the window the pipeline opened: its messages are out,
    // or its clients were answered, and its own write is lost.
    const bool worked_early = n.pending->sent_early > 0 || n.pending->applied_early > 0;
    if (worked_early && !healing_ && nemesis_rng_.uniform(100) == 0) {
      ++result_.window_crashes;
      schedule(0, Event{EventType::kCrash, n.id, n.incarnation});
    }
    // Disk latency, sometimes slow (a stall longer than a heartbeat).
    const uint64_t roll = disk_rng_.uniform(1000);
    uint64_t latency = disk_rng_.uniform(3);
    if (roll < 5) {
      latency = 150 + disk_rng_.uniform(1850);  // a stall longer than an election timeout
    } else if (roll < 35) {
      latency = 20 + disk_rng_.uniform(60);
    }
    schedule(latency, Event{EventType::kDiskDone, n.id, n.incarnation});
    return;
  }
}

void Simulation::complete_ready(Node& n) {
  rn::ReadyPipeline::InFlight f = std::move(*n.pending);
  n.pending.reset();
  if (Status s = n.pipeline->finish(f); !s.ok())
    violation("node " + std::to_string(n.id) + " failed a Ready: " + s.to_string());
  serve_reads(n);
  maybe_compact(n);
}

void Simulation::persist(Node& n, const std::vector<Entry>& entries,
                         const std::optional<HardState>& hs, bool sync) {
  persist_entries(n, entries);
  if (hs) {
    if (hs->term < n.durable_term)
      violation("node " + std::to_string(n.id) + " term went backwards");
    const HardState old = n.disk->hard_state();
    if (old.term == hs->term && old.vote != kNoNode && hs->vote != old.vote)
      violation("node " + std::to_string(n.id) + " voted twice in term " +
                std::to_string(old.term));
    n.durable_term = hs->term;
    n.disk->set_hard_state(*hs);
  }
  if (sync)
    n.synced_hs = n.disk->hard_state();
}

void Simulation::check_read_states(Node& n, const std::vector<ReadState>& states) {
  for (const ReadState& rs : states) {
    auto it = n.reads.find(rs.context);
    if (it == n.reads.end())
      continue;
    if (rs.index < it->second.mark) {
      violation("ReadIndex on node " + std::to_string(n.id) + " returned " +
                std::to_string(rs.index) + " but index " + std::to_string(it->second.mark) +
                " was committed before the read began");
    }
    it->second.read_index = rs.index;
  }
}

void Simulation::persist_entries(Node& n, const std::vector<Entry>& entries) {
  if (entries.empty())
    return;
  n.disk->append(entries);
  for (const Entry& e : entries) {
    // Entries a snapshot already covers are dropped by the disk, as here.
    if (e.index <= n.disk->snapshot()->index)
      continue;
    if (e.index == 0 || e.index - 1 >= n.prefix.size()) {
      violation("node " + std::to_string(n.id) + " persisted entry " + std::to_string(e.index) +
                " after a gap");
      return;
    }
    n.prefix.resize(e.index);
    const uint64_t h = mix(n.prefix[e.index - 1], mix(e.term, hash_entry(e)));
    n.prefix.push_back(h);
    // Log Matching (paper 5.3): same index and term means the same log up to there.
    auto [it, inserted] = log_prefix_.emplace(std::make_pair(e.index, e.term), h);
    if (!inserted && it->second != h) {
      violation("log matching: node " + std::to_string(n.id) + " holds entry " +
                std::to_string(e.index) + " of term " + std::to_string(e.term) +
                " after a different log than another node");
    }
  }
}

void Simulation::install_snapshot(Node& n, const SnapshotMeta& meta) {
  if (meta.index <= std::max(n.app.applied, n.disk->snapshot()->index)) {
    violation("node " + std::to_string(n.id) + " was told to install snapshot " +
              std::to_string(meta.index) + ", not newer than what it has");
    return;
  }
  auto data = n.incoming_snapshots.find(meta.index);
  if (data == n.incoming_snapshots.end()) {
    violation("node " + std::to_string(n.id) + " was told to install snapshot " +
              std::to_string(meta.index) + " it never received");
    return;
  }
  if (meta.index < applied_.size() && applied_[meta.index] &&
      applied_[meta.index]->digest != data->second.digest) {
    violation("snapshot at " + std::to_string(meta.index) +
              " differs from the state applied there");
  }
  if (data->second.applied != meta.index)
    violation("snapshot data does not match its metadata");
  n.app = data->second;
  n.applied_term = meta.term;
  n.disk_snapshots[meta.index] = data->second;
  n.disk->apply_snapshot(meta);
  auto prefix = log_prefix_.find({meta.index, meta.term});
  if (prefix == log_prefix_.end()) {
    violation("snapshot at " + std::to_string(meta.index) + " covers an entry no node ever stored");
    return;
  }
  n.prefix.assign(meta.index + 1, 0);
  n.prefix[meta.index] = prefix->second;
  ++result_.snapshots;
  trace("node " + std::to_string(n.id) + " installed snapshot " + std::to_string(meta.index));
}

void Simulation::apply(Node& n, const Entry& e) {
  if (e.index != n.app.applied + 1) {
    violation("node " + std::to_string(n.id) + " applied " + std::to_string(e.index) + " after " +
              std::to_string(n.app.applied) + ": not a gap-free prefix");
    return;
  }
  const uint64_t h = hash_entry(e);
  n.app.digest = mix(n.app.digest, mix(e.index, h));
  n.app.applied = e.index;
  n.applied_term = e.term;
  if (applied_.size() <= e.index)
    applied_.resize(e.index + 1);
  auto& rec = applied_[e.index];
  if (!rec) {
    rec = AppliedRecord{e.term, h, n.app.digest};
    ++result_.committed;
  } else if (rec->term != e.term || rec->entry_hash != h || rec->digest != n.app.digest) {
    violation("state machine safety: node " + std::to_string(n.id) +
              " applied a different entry at " + std::to_string(e.index));
  }
  auto p = proposals_.find({n.id, n.incarnation, e.index});
  if (p != proposals_.end()) {
    if (p->second.term == e.term) {
      if (hash_entry(Entry{e.term, e.index, EntryType::kNormal, p->second.value}) != h) {
        violation("a proposal committed with different contents");
      }
      acked_[e.index] = h;
      // Liveness: a write proposed after healing has committed.
      if (healing_ && p->second.proposed_at >= healed_at_)
        probe_acked_ = true;
    }
    proposals_.erase(p);
  }
}

void Simulation::serve_reads(Node& n) {
  for (auto it = n.reads.begin(); it != n.reads.end();) {
    const Read& r = it->second;
    if (r.read_index && n.app.applied >= *r.read_index) {
      if (n.app.applied < r.mark)
        violation("a linearizable read missed a committed write");
      ++result_.reads;
      it = n.reads.erase(it);
    } else {
      ++it;
    }
  }
}

void Simulation::maybe_compact(Node& n) {
  const Index snap = n.disk->snapshot()->index;
  if (n.app.applied < snap + n.compact_every)
    return;
  n.disk_snapshots[n.app.applied] = n.app;
  const uint64_t trailing = disk_rng_.uniform(3) == 0 ? 0 : disk_rng_.uniform(20);
  Status s = n.disk->create_snapshot(n.app.applied, n.core->conf(), trailing);
  if (!s.ok())
    violation("snapshot failed on node " + std::to_string(n.id) + ": " + s.to_string());
  // Keep the two latest snapshots' data, as a runtime would keep a few.
  while (n.disk_snapshots.size() > 2)
    n.disk_snapshots.erase(n.disk_snapshots.begin());
}

Node* Simulation::leader() {
  Node* best = nullptr;
  for (auto& [id, n] : nodes_) {
    if (n.up && n.core->role() == Role::kLeader && (!best || n.core->term() > best->core->term()))
      best = &n;
  }
  return best;
}

std::vector<NodeId> Simulation::up_nodes() {
  std::vector<NodeId> out;
  for (auto& [id, n] : nodes_) {
    if (n.up)
      out.push_back(id);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Network

void Simulation::send(Node& from, Message m) {
  if (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
      m.type == MessageType::kSnapshot || m.type == MessageType::kTimeoutNow) {
    // Only a leader sends these: election safety, however briefly it led.
    auto [it, inserted] = leader_of_term_.emplace(m.term, from.id);
    if (!inserted && it->second != from.id) {
      violation("two leaders in term " + std::to_string(m.term) + ": " +
                std::to_string(it->second) + " and " + std::to_string(from.id));
    }
  }
  const NodeId to = m.to;
  Node* target = node(to);
  const bool partitioned = blocked(from.id, to);
  if (!target || partitioned || net_rng_.uniform(100) < loss_percent_) {
    if (m.type == MessageType::kSnapshot)
      from.core->report_snapshot(to, false);
    if (net_rng_.uniform(2) == 0)
      from.core->report_unreachable(to);
    return;
  }
  Event e{EventType::kDeliver, to, from.incarnation};
  if (m.type == MessageType::kSnapshot)
    e.snapshot_data = from.disk_snapshots.at(m.snapshot.index);
  const int copies = net_rng_.uniform(100) < dup_percent_ ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    Event copy = e;
    copy.msg = m;
    uint64_t at = now_ + 1 + net_rng_.uniform(max_delay_ms_);
    // Now and then a message is held back for seconds: it arrives after terms and restarts.
    if (reorder_ && net_rng_.uniform(100) == 0)
      at += 200 + net_rng_.uniform(2800);
    if (!reorder_) {
      uint64_t& busy = link_busy_until_[{from.id, to}];
      at = std::max(at, busy);
      busy = at;
    }
    schedule(at - now_, std::move(copy));
  }
}

// ---------------------------------------------------------------------------------------------
// The pipeline's sink

const HardState& SimSink::stored_hard_state() const {
  return node_->disk->hard_state();
}

Index SimSink::stored_last_index() const {
  return node_->disk->last_index();
}

Status SimSink::save(const std::vector<Entry>& entries, const std::optional<HardState>& hard_state,
                     bool sync) {
  sim_->persist(*node_, entries, hard_state, sync);
  return Status();
}

Status SimSink::install_snapshot(const SnapshotMeta& meta) {
  sim_->install_snapshot(*node_, meta);
  return Status();
}

void SimSink::send(std::vector<Message> messages) {
  for (Message& m : messages)
    sim_->send(*node_, std::move(m));
}

void SimSink::send_snapshot(Message m) {
  sim_->send(*node_, std::move(m));
}

Status SimSink::apply(std::span<const Entry> committed) {
  for (const Entry& e : committed)
    sim_->apply(*node_, e);
  return Status();
}

void SimSink::read_states(std::vector<ReadState> states) {
  sim_->check_read_states(*node_, states);
}

// ---------------------------------------------------------------------------------------------
// Events

void Simulation::handle(Event& e) {
  switch (e.type) {
    case EventType::kTick: {
      Node& n = nodes_.at(e.node);
      if (!n.up || n.incarnation != e.incarnation)
        return;
      n.core->tick();
      process(n);
      // Clocks drift a little: each node's tick is 9-11 ms.
      schedule(kTickMs - 1 + net_rng_.uniform(3), Event{EventType::kTick, n.id, n.incarnation});
      return;
    }
    case EventType::kDeliver: {
      Node& n = nodes_.at(e.node);
      const NodeId from = e.msg.from;
      const bool is_snapshot = e.msg.type == MessageType::kSnapshot;
      Node* sender = node(from);
      // The transport that streamed a snapshot tells its sender how it went, if it still runs.
      const bool sender_alive = sender && sender->up && sender->incarnation == e.incarnation;
      if (!n.up) {
        if (is_snapshot && sender_alive) {
          sender->core->report_snapshot(n.id, false);
          process(*sender);
        }
        return;
      }
      if (opt_.trace) {
        std::ostringstream os;
        os << "n" << e.node << " <- n" << from << " " << message_type_name(e.msg.type)
           << " term=" << e.msg.term << " index=" << e.msg.index << " log_term=" << e.msg.log_term
           << " entries=" << e.msg.entries.size() << " commit=" << e.msg.commit
           << (e.msg.reject ? " REJECT" : "");
        trace(os.str());
      }
      if (e.snapshot_data)
        n.incoming_snapshots[e.msg.snapshot.index] = *e.snapshot_data;
      // The node's inbound rules, then the core: a message from a real peer passes both.
      const char* rule = rn::refuse_inbound(e.msg, transport::Sender{from, true}, n.core->conf(),
                                            {}, e.snapshot_data.has_value());
      // A member that is gone (or not yet known here) is not listened to, and liveness is
      // checked after healing; no other rule may ever refuse what a real peer sent.
      if (rule != nullptr && std::string_view(rule) != "from_non_member")
        violation(std::string("the inbound rules refused a real message: ") + rule);
      Status s = rule ? Status() : n.core->step(std::move(e.msg));
      if (!s.ok())
        violation("step refused a message: " + s.to_string());
      if (is_snapshot && sender_alive) {
        // Sometimes the stream's end is lost although the data arrived.
        sender->core->report_snapshot(n.id, net_rng_.uniform(10) != 0);
        process(*sender);
      }
      process(n);
      return;
    }
    case EventType::kDiskDone: {
      Node& n = nodes_.at(e.node);
      if (!n.up || n.incarnation != e.incarnation || !n.pending)
        return;
      complete_ready(n);
      process(n);
      return;
    }
    case EventType::kNemesis:
      if (healing_)
        return;
      nemesis();
      schedule(100 + nemesis_rng_.uniform(500), Event{EventType::kNemesis});
      return;
    case EventType::kHealPartition:
      if (e.generation == partition_generation_ && !cut_.empty()) {
        cut_.clear();
        trace("partition healed");
      }
      return;
    case EventType::kCrash: {
      Node& n = nodes_.at(e.node);
      if (healing_ || !n.up || n.incarnation != e.incarnation)
        return;
      crash(n.id);
      ++result_.faults;
      schedule(20 + nemesis_rng_.uniform(500), Event{EventType::kRestart, n.id, n.incarnation});
      return;
    }
    case EventType::kRestart:
      if (Node* n = node(e.node); n && n->incarnation == e.incarnation)
        restart(e.node);
      return;
    case EventType::kWrite:
      if (healing_ && probe_acked_)
        return;
      client_write();
      schedule(1 + client_rng_.uniform(8), Event{EventType::kWrite});
      return;
    case EventType::kRead:
      if (healing_)
        return;
      client_read();
      schedule(2 + client_rng_.uniform(25), Event{EventType::kRead});
      return;
  }
}

void Simulation::client_write() {
  auto up = up_nodes();
  if (up.empty())
    return;
  Node* n = &nodes_.at(up[client_rng_.uniform(up.size())]);
  // A client that reached a follower retries at the leader it names.
  if (n->core->role() != Role::kLeader) {
    Node* named = node(n->core->leader());
    if (!named || !named->up)
      return;
    n = named;
  }
  std::string value = "w" + std::to_string(++write_counter_);
  auto r = n->core->propose(value);
  if (!r.ok())
    return;
  proposals_[{n->id, n->incarnation, r->index}] = Proposal{r->term, std::move(value), now_};
  process(*n);
}

Index Simulation::commit_high_water() {
  Index high = commit_term_.empty() ? 0 : commit_term_.size() - 1;
  for (auto& [id, n] : nodes_) {
    if (n.up)
      high = std::max(high, n.core->hard_state().commit);
  }
  return high;
}

void Simulation::client_read() {
  auto up = up_nodes();
  if (up.empty())
    return;
  Node& n = nodes_.at(up[client_rng_.uniform(up.size())]);
  std::string ctx = "r" + std::to_string(++read_counter_);
  const Index mark = commit_high_water();
  if (!n.core->read_index(ctx).ok())
    return;
  n.reads[ctx] = Read{mark, std::nullopt};
  process(n);
}

void Simulation::nemesis() {
  const uint64_t roll = nemesis_rng_.uniform(100);
  if (roll < 20) {
    partition();
  } else if (roll < 35) {
    // Half of the crashes hit the leader: the moments around a leader change are the risky ones.
    auto up = up_nodes();
    Node* l = leader();
    if (up.empty())
      return;
    const NodeId victim =
        l && nemesis_rng_.uniform(2) ? l->id : up[nemesis_rng_.uniform(up.size())];
    crash(victim);
    schedule(50 + nemesis_rng_.uniform(1500),
             Event{EventType::kRestart, victim, nodes_.at(victim).incarnation});
  } else if (roll < 45) {
    loss_percent_ = nemesis_rng_.uniform(31);
    dup_percent_ = nemesis_rng_.uniform(11);
    max_delay_ms_ = 1 + nemesis_rng_.uniform(30);
    reorder_ = nemesis_rng_.uniform(2) == 0;
    trace("network: loss " + std::to_string(loss_percent_) + "% dup " +
          std::to_string(dup_percent_) + "% delay up to " + std::to_string(max_delay_ms_) + "ms" +
          (reorder_ ? ", reordering" : ""));
  } else if (roll < 55) {
    change_membership();
  } else if (roll < 63) {
    Node* l = leader();
    if (!l)
      return;
    const auto& voters = l->core->conf().voters;
    auto it = voters.begin();
    std::advance(it, static_cast<long>(nemesis_rng_.uniform(voters.size())));
    trace("transfer leadership " + std::to_string(l->id) + " -> " + std::to_string(*it));
    (void)l->core->transfer_leadership(*it);
    process(*l);
  } else if (opt_.forge && roll < 90) {
    for (int i = 0; i < 10; ++i)
      forge();
    return;
  } else {
    return;
  }
  ++result_.faults;
}

// One forged message, built from its target's state at this instant and stepped into it at once
// (through the node's inbound rules, as the transport hands it over): it must be refused.
void Simulation::forge() {
  auto up = up_nodes();
  if (up.empty())
    return;
  Node& n = nodes_.at(up[nemesis_rng_.uniform(up.size())]);
  const NodeId leader_id = n.core->leader();
  const ConfState& conf = n.core->conf();
  // A member that is neither the target nor its leader.
  NodeId other = kNoNode;
  for (NodeId id : conf.voters) {
    if (id != n.id && id != leader_id)
      other = id;
  }
  Message m;
  m.to = n.id;
  m.term = n.core->term();
  m.from = leader_id;
  transport::Sender sender{kNoNode, false};
  bool from_stream = false;
  const Index last = n.core->status().last_index;
  std::string kind;
  switch (nemesis_rng_.uniform(10)) {
    case 0:  // a term no cluster reaches, from a member
      m.type = MessageType::kVote;
      m.from = other;
      m.term = kMaxTerm + nemesis_rng_.uniform(1000);
      kind = "term_too_large";
      break;
    case 1:  // a message from a peer other than the one its connection is bound to
      m.type = MessageType::kHeartbeat;
      m.from = other;
      sender.id = other == kNoNode ? 1 : other + 1000;
      kind = "wrong_sender";
      break;
    case 2:  // a stranger, as a plaintext peer, to a node that knows its members
      if (conf.voters.empty() && conf.learners.empty())
        return;
      m.type = MessageType::kVote;
      m.from = 1000000 + nemesis_rng_.uniform(1000);
      m.term += 5;
      kind = "from_non_member";
      break;
    case 3:  // a snapshot offered in a bare message
      m.type = MessageType::kSnapshot;
      m.snapshot = SnapshotMeta{last + 10, m.term, conf};
      kind = "unoffered_snapshot";
      break;
    case 4:  // a snapshot stream whose message names no snapshot
      m.type = MessageType::kSnapshot;
      from_stream = true;
      kind = "malformed_snapshot";
      break;
    case 5:  // leader traffic in our term from someone else
      m.type = nemesis_rng_.uniform(2) ? MessageType::kAppend : MessageType::kHeartbeat;
      m.from = other;
      m.index = last;
      kind = "second_leader";
      break;
    case 6:  // a commit index past our log
      m.type = MessageType::kHeartbeat;
      m.commit = last + 1 + nemesis_rng_.uniform(100);
      kind = "commit_past_log";
      break;
    case 7:  // entries that do not follow prev
      m.type = MessageType::kAppend;
      m.index = last;
      m.log_term = m.term;
      m.entries.push_back(
          Entry{m.term, last + 2 + nemesis_rng_.uniform(5), EntryType::kNormal, "forged"});
      kind = "malformed_append";
      break;
    case 8:  // leadership handed over by someone who does not lead
      m.type = MessageType::kTimeoutNow;
      m.from = other;
      kind = "not_from_leader";
      break;
    default:  // an acknowledgement of entries the leader does not have
      if (n.core->role() != Role::kLeader)
        return;
      m.type = MessageType::kAppendResponse;
      m.from = other == kNoNode ? leader_id : other;
      for (NodeId id : conf.voters) {
        if (id != n.id)
          m.from = id;
      }
      m.index = last + 1 + nemesis_rng_.uniform(100);
      kind = "ack_past_log";
      break;
  }
  const bool needs_leader = kind == "unoffered_snapshot" || kind == "malformed_snapshot" ||
                            kind == "second_leader" || kind == "commit_past_log" ||
                            kind == "malformed_append" || kind == "not_from_leader";
  if (m.from == kNoNode || (needs_leader && (leader_id == kNoNode || leader_id == n.id)) ||
      ((kind == "second_leader" || kind == "not_from_leader") && other == kNoNode))
    return;  // this node's state does not allow this kind now
  if (sender.id == kNoNode)
    sender.id = m.from;
  ++result_.forged;
  trace("FORGE " + kind + " -> node " + std::to_string(n.id));
  const char* rule = rn::refuse_inbound(m, sender, conf, {}, from_stream);
  if (rule != nullptr)
    return;
  Status s = n.core->step(std::move(m));
  if (s.code() != Status::Code::kProtocolViolation) {
    violation("a forged message (" + kind + ") to node " + std::to_string(n.id) +
              " was not refused: " + s.to_string());
  }
  process(n);
}

void Simulation::partition() {
  cut_.clear();
  std::vector<NodeId> ids;
  for (auto& [id, n] : nodes_)
    ids.push_back(id);
  const uint64_t kind = nemesis_rng_.uniform(4);
  std::string what;
  auto isolate = [&](NodeId victim) {
    for (NodeId other : ids) {
      if (other == victim)
        continue;
      cut_.insert({victim, other});
      cut_.insert({other, victim});
    }
  };
  if (kind == 0) {
    // A random split into two sides.
    std::set<NodeId> side;
    for (NodeId id : ids) {
      if (nemesis_rng_.uniform(2))
        side.insert(id);
    }
    for (NodeId a : ids) {
      for (NodeId b : ids) {
        if (side.count(a) != side.count(b))
          cut_.insert({a, b});
      }
    }
    what = "split (" + std::to_string(side.size()) + " vs " +
           std::to_string(ids.size() - side.size()) + ")";
  } else if (kind == 1) {
    Node* l = leader();
    if (!l)
      return;
    isolate(l->id);
    what = "leader " + std::to_string(l->id) + " isolated";
  } else if (kind == 2) {
    const NodeId victim = ids[nemesis_rng_.uniform(ids.size())];
    isolate(victim);
    what = "node " + std::to_string(victim) + " isolated";
  } else {
    // One direction only: `a` can no longer reach `b`.
    const NodeId a = ids[nemesis_rng_.uniform(ids.size())];
    const NodeId b = ids[nemesis_rng_.uniform(ids.size())];
    if (a == b)
      return;
    cut_.insert({a, b});
    what = "one-way cut " + std::to_string(a) + " -/-> " + std::to_string(b);
  }
  ++partition_generation_;
  trace("PARTITION " + what);
  schedule(100 + nemesis_rng_.uniform(3000),
           Event{EventType::kHealPartition, kNoNode, 0, partition_generation_});
}

void Simulation::change_membership() {
  Node* l = leader();
  if (!l)
    return;
  const ConfState& conf = l->core->conf();
  ConfChange cc;
  const uint64_t roll = nemesis_rng_.uniform(4);
  if (roll == 0) {
    cc = ConfChange{ConfChangeType::kAddLearner, next_id_, {}};
  } else if (roll == 1 && !conf.learners.empty()) {
    cc = ConfChange{ConfChangeType::kAddVoter, *conf.learners.begin(), {}};
  } else if (roll == 2 && conf.voters.size() > initial_.voters.size() - 1 &&
             conf.voters.size() > 2) {
    auto it = conf.voters.begin();
    std::advance(it, static_cast<long>(nemesis_rng_.uniform(conf.voters.size())));
    cc = ConfChange{ConfChangeType::kRemoveNode, *it, {}};
  } else if (roll == 3 && !conf.learners.empty()) {
    cc = ConfChange{ConfChangeType::kRemoveNode, *conf.learners.begin(), {}};
  } else {
    return;
  }
  auto r = l->core->change_membership(cc);
  trace(std::string("membership: ") +
        (cc.type == ConfChangeType::kAddLearner ? "add learner "
         : cc.type == ConfChangeType::kAddVoter ? "promote "
                                                : "remove ") +
        std::to_string(cc.node) + (r.ok() ? "" : " refused: " + r.status().to_string()));
  if (!r.ok())
    return;
  if (cc.type == ConfChangeType::kAddLearner && cc.node == next_id_++)
    start_node(cc.node, nullptr);
  process(*l);
}

void Simulation::heal_all() {
  healing_ = true;
  healed_at_ = now_;
  cut_.clear();
  loss_percent_ = 0;
  dup_percent_ = 0;
  max_delay_ms_ = 5;
  reorder_ = false;
  trace("HEAL: all faults removed, all nodes restarted");
  for (auto& [id, n] : nodes_) {
    if (!n.up)
      restart(id);
  }
}

// ---------------------------------------------------------------------------------------------
// Checks

void Simulation::observe_ready(Node& n, const Ready& rd) {
  for (const Entry& e : rd.committed_entries) {
    if (committed_entry_term_.size() <= e.index)
      committed_entry_term_.resize(e.index + 1, 0);
    Term& t = committed_entry_term_[e.index];
    if (t != 0 && t != e.term) {
      violation("two different entries committed at index " + std::to_string(e.index));
      return;
    }
    t = e.term;
  }
  if (rd.soft_state && rd.soft_state->role == Role::kLeader) {
    const Term term = n.core->term();
    // Election Safety (paper Fig. 3): at most one leader per term.
    auto [it, inserted] = leader_of_term_.emplace(term, n.id);
    if (!inserted && it->second != n.id) {
      violation("two leaders in term " + std::to_string(term) + ": " + std::to_string(it->second) +
                " and " + std::to_string(n.id));
    }
    ++result_.elections;
    trace("node " + std::to_string(n.id) + " became leader of term " + std::to_string(term));
    check_leader_completeness(n, rd);
    // Leaders that die young leave logs replicated part way (paper Fig. 8).
    if (!healing_ && nemesis_rng_.uniform(100) < 30) {
      schedule(1 + nemesis_rng_.uniform(15), Event{EventType::kCrash, n.id, n.incarnation});
    }
  }
  if (rd.hard_state) {
    const Index commit = rd.hard_state->commit;
    if (commit < n.last_commit) {
      violation("commit index of node " + std::to_string(n.id) + " went back from " +
                std::to_string(n.last_commit) + " to " + std::to_string(commit));
    }
    n.last_commit = commit;
    // The first node to report a commit is its leader: remember the term it committed in.
    for (Index i = commit_term_.size(); i <= commit; ++i)
      commit_term_.push_back(rd.hard_state->term);
  }
}

void Simulation::check_leader_completeness(Node& n, const Ready& rd) {
  // Leader Completeness (paper Fig. 3): an entry committed in an earlier term is in the log of
  // every later leader.
  const Term term = n.core->term();
  const Index first_unstable = rd.entries.empty() ? UINT64_MAX : rd.entries.front().index;
  const Index snap = n.disk->snapshot()->index;
  for (Index i = snap + 1; i < committed_entry_term_.size() && i < commit_term_.size(); ++i) {
    if (!committed_entry_term_[i] || commit_term_[i] >= term)
      continue;
    Result<Term> have = i >= first_unstable && i - first_unstable < rd.entries.size()
                            ? Result<Term>(rd.entries[i - first_unstable].term)
                            : n.disk->term(i);
    if (!have.ok() || *have != committed_entry_term_[i]) {
      violation("leader completeness: node " + std::to_string(n.id) + " leads term " +
                std::to_string(term) + " without committed entry " + std::to_string(i));
      return;
    }
  }
}

bool Simulation::liveness_reached() {
  if (!probe_acked_)
    return false;
  Node* l = leader();
  // A new leader knows its commit index covers every committed entry only once an entry of its
  // own term has committed.
  if (!l || l->applied_term != l->core->term())
    return false;
  const ConfState& conf = l->core->conf();
  for (NodeId id : conf.voters) {
    Node* n = node(id);
    if (!n || !n->up || n->app.applied != l->app.applied || n->app.digest != l->app.digest)
      return false;
  }
  for (NodeId id : conf.learners) {
    Node* n = node(id);
    if (!n || !n->up || n->app.applied != l->app.applied)
      return false;
  }
  return l->app.applied == l->core->hard_state().commit;
}

void Simulation::final_checks() {
  Node* l = leader();
  if (!l)
    return;
  // Nothing acknowledged is lost: every acked write is in the final state at its index.
  for (const auto& [index, h] : acked_) {
    if (index > l->app.applied || !applied_[index] || applied_[index]->entry_hash != h) {
      violation("acknowledged write at index " + std::to_string(index) +
                " is missing from the final state of leader " + std::to_string(l->id) +
                " (applied " + std::to_string(l->app.applied) + ")");
      return;
    }
  }
}

SimResult Simulation::run() {
  const size_t entry_limits[] = {1, 2, 8, 64};
  const size_t window_limits[] = {2, 4, 16, 256};
  max_msg_entries_ = entry_limits[disk_rng_.uniform(4)];
  max_inflight_msgs_ = window_limits[disk_rng_.uniform(4)];
  for (int i = 1; i <= opt_.nodes; ++i)
    initial_.voters.insert(static_cast<NodeId>(i));
  next_id_ = static_cast<NodeId>(opt_.nodes + 1);
  // Vary what the core is configured with, so that every combination gets its share of seeds.
  const int heartbeat_ticks[] = {1, 2, 3};
  heartbeat_tick_ = heartbeat_ticks[disk_rng_.uniform(3)];
  election_tick_ = heartbeat_tick_ * 5 + static_cast<int>(disk_rng_.uniform(11));
  pre_vote_ = disk_rng_.uniform(4) != 0;
  check_quorum_ = disk_rng_.uniform(4) != 0;
  for (NodeId id : initial_.voters)
    start_node(id, &initial_);
  schedule(200, Event{EventType::kNemesis});
  schedule(1, Event{EventType::kWrite});
  schedule(5, Event{EventType::kRead});

  uint64_t deadline = 0;
  while (!queue_.empty() && result_.violations.empty()) {
    auto it = queue_.begin();
    now_ = it->first.first;
    Event e = std::move(it->second);
    queue_.erase(it);
    ++result_.events;
    handle(e);
    if (!healing_ && result_.events >= opt_.fault_events) {
      heal_all();
      deadline = now_ + opt_.liveness_ms;
    }
    if (healing_) {
      if (liveness_reached())
        break;
      if (now_ > deadline) {
        Node* l = leader();
        violation(
            std::string("liveness: ") + std::to_string(opt_.liveness_ms) + "ms after healing, " +
            (l ? "leader " + std::to_string(l->id) + " has not committed a new write and converged"
               : "there is no leader"));
      }
    }
  }
  if (result_.violations.empty())
    final_checks();
  return result_;
}

}  // namespace

SimResult run_simulation(const SimOptions& options,
                         const std::function<void(const std::string&)>& trace_sink) {
  Simulation sim(options, trace_sink);
  return sim.run();
}

}  // namespace raftnginx::raft::sim
