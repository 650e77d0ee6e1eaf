// Node: the runtime around one consensus core. It owns the core on a single thread (the raft
// loop) and connects it to the durable log, the snapshot store, the state machine and the
// transport. Everything else talks to it through thread-safe calls that queue work for that
// thread.
//
// Each turn of the raft loop runs the queued work (proposals, messages, reads), ticks the core
// when due, then handles the core's Ready as raw_node.h prescribes: write entries and hard state
// to the log (one record, one fsync: every proposal queued since the last turn shares it, which
// is group commit), send the messages, apply committed commands to the state machine in one
// batch, answer the clients whose entries they were, and advance. A leader overlaps the fsync
// with what does not depend on it: its appends go out before (thesis 10.2.1), and committed
// entries it already holds on disk are applied and answered before.
//
// Start-up: the latest snapshot is restored into the state machine only if the state machine is
// behind it; a durable state machine resumes from its own applied index, so nothing it applied
// is handed to it again.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>

#include "fsm/state_machine.h"
#include "raft/raw_node.h"
#include "storage/log_store.h"
#include "storage/snapshot_store.h"
#include "transport/transport.h"
#include "util/histogram.h"

namespace raftnginx::node {

struct NodeOptions {
  raft::NodeId id = raft::kNoNode;
  std::string data_dir;
  std::string log_dir;  // the write-ahead log; default: <data_dir>/log
  storage::Env* env = storage::Env::posix();
  std::chrono::milliseconds tick{50};
  int election_ticks = 20;  // 1 s at 50 ms per tick; randomized up to twice that
  int heartbeat_ticks = 2;  // 100 ms
  // Take a snapshot once this many entries were applied since the last one, or once this much
  // time passed since the last one and anything was applied (0: no time trigger).
  uint64_t snapshot_threshold = 8192;
  std::chrono::seconds snapshot_interval{0};
  // Entries kept before a snapshot for followers that lag a little.
  uint64_t trailing_logs = 10240;
  size_t retain_snapshots = 2;
  uint64_t segment_bytes = 64 << 20;
  // For the first start of a brand-new cluster: its initial members and their contexts. Ignored
  // when the data directory already holds state.
  std::optional<raft::ConfState> bootstrap;
  std::map<raft::NodeId, std::string> bootstrap_contexts;
};

// What became of a proposal: the state machine's result once its entry was applied here, or
// why that is not known (not the leader, the entry was replaced, the node stopped).
using ProposeCallback = std::function<void(Result<fsm::ApplyResult>)>;
using StatusCallback = std::function<void(Status)>;

struct NodeStatus {
  raft::NodeStatus raft;
  raft::Index applied = 0;
  raft::Index snapshot_index = 0;
  std::map<raft::NodeId, std::string> member_contexts;
  uint64_t entries_applied = 0;  // commands handed to the state machine since start
  uint64_t snapshots_taken = 0;
  uint64_t snapshots_installed = 0;
  uint64_t leader_changes = 0;  // times this node saw a new leader
  // When this node last heard from the leader of its term (now, on the leader itself); the
  // epoch if never.
  std::chrono::steady_clock::time_point leader_contact;
  Status failure;  // set once the node stopped because of a storage or state machine error
};

class Node final : public transport::Receiver {
 public:
  // Opens the node's storage under options.data_dir, brings the state machine up to date and
  // starts the raft loop.
  static Result<std::unique_ptr<Node>> start(NodeOptions options,
                                             std::unique_ptr<fsm::StateMachine> fsm,
                                             transport::Transport* transport);
  ~Node() override;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Proposes `command` (for the state machine), answered once it is applied on this node.
  void propose(std::string command, std::string request_id, ProposeCallback done);
  // A linearizable read barrier (ReadIndex): `done` runs once this node's state machine
  // reflects every write committed before the call.
  void read_barrier(StatusCallback done);
  void change_membership(raft::ConfChange cc, ProposeCallback done);
  void transfer_leadership(raft::NodeId to, StatusCallback done);
  // Graceful stop (SIGTERM): refuses new writes, hands leadership to the most up-to-date voter
  // if this node leads and waits up to `timeout` for it to take over, then stops.
  void shutdown(std::chrono::milliseconds timeout);
  // Stops the raft loop and closes storage. Pending callbacks get an error.
  void stop();

  NodeStatus status() const;
  // Two figures of status() that every HTTP answer carries, read without copying the rest.
  raft::Index applied_index() const { return published_applied_.load(); }
  std::chrono::steady_clock::time_point leader_contact() const {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(published_leader_contact_.load()));
  }
  // How long each synced log write took.
  const Histogram& sync_latency() const { return sync_latency_; }
  fsm::StateMachine& state_machine() { return *fsm_; }
  raft::NodeId id() const { return options_.id; }

  // transport::Receiver
  void receive(raft::Message m) override;
  Result<std::string> begin_snapshot_receive() override;
  Status finish_snapshot_receive(raft::Message m, const std::string& staged_dir,
                                 storage::SnapshotInfo info) override;

 private:
  Node(NodeOptions options, std::unique_ptr<fsm::StateMachine> fsm,
       transport::Transport* transport);
  Status open_storage();
  // The raft loop's work queue. Shared so that a transport callback that outlives the node
  // posts into a closed mailbox instead of a destroyed one.
  struct Mailbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    bool closed = false;
  };
  // Returns false if the node stopped (the task will never run).
  bool post(std::function<void()> task) { return post_to(mailbox_, std::move(task)); }
  static bool post_to(const std::shared_ptr<Mailbox>& mailbox, std::function<void()> task);
  // Runs `work(done)` on the raft loop, unless the node failed or stopped: then `done` gets the
  // error instead. Either way `done` is called exactly once.
  template <typename Done, typename Work>
  void submit(Done done, Work work) {
    auto holder = std::make_shared<Done>(std::move(done));
    const bool queued = post([this, holder, work = std::move(work)]() mutable {
      if (!failure_.ok())
        return (*holder)(failure_);
      work(*holder);
    });
    if (!queued)
      (*holder)(Status::unavailable("the node stopped"));
  }
  void add_waiter(const raft::ProposalId& id, ProposeCallback done);
  void expire_reads();
  void issue_reads();
  void send_snapshot(raft::Message m);
  void unpin_snapshot(raft::Index index);
  void seal_received_snapshot(raft::Message m, const std::string& staged_dir,
                              storage::SnapshotInfo info);
  void fail_pending(const Status& why);
  void run();
  void handle_ready();
  Status install_snapshot(const raft::SnapshotMeta& meta);
  Status apply_entries(std::span<const raft::Entry> entries);
  void apply_conf_change(const raft::Entry& e);
  void serve_reads();
  void maybe_snapshot();
  void fail(Status s);
  void publish_status();

  const NodeOptions options_;
  std::unique_ptr<fsm::StateMachine> fsm_;
  transport::Transport* transport_;

  // Owned by the raft loop thread.
  std::unique_ptr<storage::LogStore> log_;
  std::unique_ptr<raft::RawNode> core_;
  raft::Index applied_ = 0;
  raft::Index last_snapshot_index_ = 0;
  raft::ConfState conf_;  // as of applied_
  std::map<raft::NodeId, std::string> contexts_;
  // Membership as of each applied change since the last snapshot, to label snapshots taken at
  // an index between two changes.
  std::map<raft::Index, std::pair<raft::ConfState, std::map<raft::NodeId, std::string>>>
      conf_history_;
  struct Waiter {
    raft::Term term;
    ProposeCallback done;
  };
  std::map<raft::Index, Waiter> waiters_;
  uint64_t next_read_id_ = 0;
  // Reads that share one ReadIndex round, and the tick their round was asked for.
  struct ReadBatch {
    std::vector<StatusCallback> reads;
    uint64_t issued_tick = 0;
  };
  uint64_t ticks_ = 0;
  // At most one ReadIndex round is in flight; reads that arrive meanwhile wait for the next one,
  // so that one heartbeat round confirms many reads under load.
  ReadBatch reads_to_issue_;
  static void fail_reads(ReadBatch& batch, const Status& why);
  std::map<std::string, ReadBatch> reads_waiting_index_;
  std::multimap<raft::Index, StatusCallback> reads_waiting_apply_;
  bool snapshot_in_progress_ = false;
  std::chrono::steady_clock::time_point last_snapshot_time_ = std::chrono::steady_clock::now();
  bool draining_ = false;
  std::thread snapshot_thread_;
  Status failure_;
  std::chrono::steady_clock::time_point leader_contact_;
  raft::NodeId last_leader_ = raft::kNoNode;
  uint64_t leader_changes_ = 0;

  // Shared with other threads.
  mutable std::mutex store_mu_;  // the snapshot store
  std::mutex receive_mu_;        // receive_thread_
  std::thread receive_thread_;   // verifies and seals a snapshot received from the leader
  std::unique_ptr<storage::SnapshotStore> snapshots_;
  std::shared_ptr<Mailbox> mailbox_ = std::make_shared<Mailbox>();
  std::once_flag stop_once_;
  mutable std::mutex status_mu_;
  NodeStatus status_;
  std::atomic<raft::Index> published_applied_{0};
  std::atomic<std::chrono::steady_clock::rep> published_leader_contact_{0};
  Histogram sync_latency_;
  std::thread loop_;
};

// "leader", "follower", "candidate" (pre-candidates too) or "learner": the role an operator sees.
const char* role_label(const raft::NodeStatus& status);

// The envelope a node wraps each command in: version (1) | request id (4 + n) | command.
std::string encode_envelope(std::string_view request_id, std::string_view command);

}  // namespace raftnginx::node
