// Node: the runtime around one consensus core. It owns the core on a single thread (the raft
// loop) and connects it to the durable log, the snapshot store, the state machine and the
// transport. Everything else talks to it through thread-safe calls that queue work for that
// thread.
//
// Each turn of the raft loop runs the queued work (proposals, messages, reads), ticks the core
// when due, then hands the core's Ready to the ReadyPipeline (ready_pipeline.h), the code the
// simulator proves: entries and hard state go to the log as one record with one fsync (every
// proposal queued since the last turn shares it: group commit), messages go out (a leader's
// before its own fsync), committed commands reach the state machine in one batch (on a leader,
// those already durable before the fsync), and their clients are answered.
//
// Exactly once: every command travels in an envelope (envelope.h) with its client's request id;
// the node's session table (session_table.h) answers a retried id from its first result, for
// every backend. Start-up restores the latest snapshot into the state machine only if the
// state machine is behind it: a durable backend resumes from its own applied index, and nothing
// it applied is handed to it again.
//
// Threads and callbacks:
//   * The raft loop runs the core, the pipeline and the state machine's apply().
//   * ProposeCallback, StatusCallback and StatusObserver run on the raft loop. They must return
//     quickly and must not call stop() or shutdown() (which wait for the loop); they may call
//     the other methods, which only queue work.
//   * A snapshot is written on a thread of its own, a received one verified on another.
//   * Every public method is thread-safe.
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

#include "cluster/membership.h"
#include "node/ready_pipeline.h"
#include "node/session_table.h"
#include "raft/raw_node.h"
#include "raftnginx/pace.h"
#include "raftnginx/replica.h"
#include "raftnginx/state_machine.h"
#include "storage/log_store.h"
#include "storage/snapshot_store.h"
#include "transport/transport.h"
#include "util/clock.h"
#include "util/defaults.h"
#include "util/histogram.h"

namespace raftnginx::node {

struct NodeOptions {
  raft::NodeId id = raft::kNoNode;
  std::string data_dir;
  std::string log_dir;  // the write-ahead log; default: <data_dir>/log
  storage::Env* env = storage::Env::posix();
  const Clock* clock = Clock::real();
  // The tick, and the timeouts in ticks (election randomized up to twice its value).
  std::chrono::milliseconds tick = defaults::kHeartbeatTimeout;
  int election_ticks = static_cast<int>(defaults::kElectionTimeout / defaults::kHeartbeatTimeout);
  int heartbeat_ticks = 1;
  // Take a snapshot once this many entries were applied since the last one, or once this much
  // time passed since the last one and anything was applied (0: no time trigger).
  uint64_t snapshot_threshold = defaults::kSnapshotThreshold;
  std::chrono::milliseconds snapshot_interval{0};
  // Entries kept before a snapshot for followers that lag a little.
  uint64_t trailing_logs = defaults::kTrailingLogs;
  size_t retain_snapshots = defaults::kSnapshotRetain;
  uint64_t segment_bytes = defaults::kSegmentBytes;
  SessionLimits sessions;
  // How often a scrub re-reads everything stored (0: never), and how fast (scrub.cc).
  std::chrono::milliseconds scrub_interval{0};
  uint64_t scrub_bytes_per_second = defaults::kScrubBytesPerSecond;
  // The members that should lead, most wanted first (--preferred-leader): a leader that has
  // led for kPreferredLeaderHoldElections election timeouts hands over to the first of them
  // ranked above itself that is ready (cluster::preferred_transfer_target). The same list on
  // every node.
  std::vector<raft::NodeId> preferred_leaders;
  // For the first start of a brand-new cluster: its initial members. Ignored when the data
  // directory already holds state.
  std::optional<cluster::Membership> bootstrap;
};

using ProposeCallback = std::function<void(Result<Outcome>)>;
using StatusCallback = std::function<void(Status)>;

struct NodeStatus {
  raft::NodeStatus raft;
  raft::Index applied = 0;
  raft::Index snapshot_index = 0;
  cluster::Membership membership;  // as of `applied`
  uint64_t entries_applied = 0;    // commands handed to the state machine since start
  uint64_t snapshots_taken = 0;
  uint64_t snapshots_installed = 0;
  uint64_t leader_changes = 0;  // times this node saw a new leader
  size_t sessions = 0;          // request ids remembered
  // Messages peers sent that broke the protocol and were dropped, by kind (raft::Violation
  // names, and node/inbound.h's rules).
  std::map<std::string, uint64_t> protocol_violations;
  // When this node last heard from the leader of its term (now, on the leader itself); the
  // epoch if never.
  std::chrono::steady_clock::time_point leader_contact;
  Status failure;  // set once the node stopped because of a storage or state machine error
  // What opening the log found: records replayed, a torn write cut at start-up.
  storage::LogRecovery log_recovery;
  // The last checkpoint applied (envelope.h) and the state machine's hash as of it, if the
  // backend takes part in replica checks.
  raft::Index checkpoint_index = 0;
  std::optional<uint64_t> checkpoint_hash;
  // Damage a scrub found in what this node stores (its log, snapshots or state machine files);
  // ok if none. The node then serves no reads until it is repaired.
  Status damage;
  uint64_t scrubs_completed = 0;
};

// Called with the new status after a change an operator or the gateway follows: role, leader,
// term, membership, failure, snapshots taken or installed.
using StatusObserver = std::function<void(const NodeStatus&)>;

class Node final : public transport::Receiver, public Replica, private ReadySink {
 public:
  // Opens the node's storage under options.data_dir, brings the state machine up to date and
  // starts the raft loop.
  static Result<std::unique_ptr<Node>> start(NodeOptions options,
                                             std::unique_ptr<fsm::StateMachine> fsm,
                                             transport::Transport* transport);
  ~Node() override;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Proposes `command` (for the state machine) with the client's `request_id` (may be empty);
  // answered once it is applied on this node, or with why not: NotLeader, Busy (not committed;
  // retry), OutcomeUnknown (may have committed: retry with the same request id).
  void propose(std::string command, std::string request_id, ProposeCallback done) override;
  // A linearizable read barrier (ReadIndex): `done` runs once this node's state machine
  // reflects every write committed before the call.
  void read_barrier(StatusCallback done) override;
  void change_membership(raft::ConfChange cc, ProposeCallback done);
  // Proposes a checkpoint (leader only): once applied, every node has recorded its state hash
  // as of it, to be compared.
  void propose_checkpoint(ProposeCallback done);
  // The state hash this node recorded at the checkpoint at `index`: nullopt if it has not
  // applied it yet, or took no hash there (the backend does not take part, or the node was not
  // there: it caught up by snapshot). The last kKeptCheckpoints are kept.
  std::optional<uint64_t> checkpoint_hash(raft::Index index) const;
  // Proposes replacing the state machine's whole state with that of `backup` (storage/backup.h,
  // decoded and checked by the caller) on every node, as of the entry that carries it. Answered
  // once applied here: an error in the outcome if every node refused it (a damaged backup, one of
  // another backend, a backend that cannot replace its state), and nothing changed.
  void propose_replacement(std::string backup, ProposeCallback done);
  // Writes a point-in-time view of the state machine (a backup's files) into a fresh directory
  // beside the snapshots, on a thread of its own. The view is taken on the raft loop between two
  // batches: `stall` is how long writers waited for it. The caller removes the directory (a
  // start after a crash removes what is left). One at a time: Busy while another is written;
  // Unavailable while nothing was applied.
  struct StagedView {
    std::string dir;
    std::vector<storage::SnapshotFile> files;  // what the view wrote there
    raft::Index index = 0;
    raft::Term term = 0;
    std::string fsm_name;
    std::chrono::microseconds stall{0};
  };
  void stage_view(std::function<void(Result<StagedView>)> done);
  storage::Env* env() const { return options_.env; }
  void transfer_leadership(raft::NodeId to, StatusCallback done);
  // Calls `observer` with the current status now, and after every change (see StatusObserver).
  void observe(StatusObserver observer);
  // Graceful stop (SIGTERM): refuses new writes, hands leadership to the most up-to-date voter
  // if this node leads and waits up to `timeout` for it to take over, then stops.
  void shutdown(std::chrono::milliseconds timeout);
  // Stops the raft loop and closes storage. Pending callbacks get an error.
  void stop();

  NodeStatus status() const;
  ReplicaStatus replica_status() const override;
  // Two figures of status() that every HTTP answer carries, read without copying the rest.
  raft::Index applied_index() const override { return published_applied_.load(); }
  // Whether a scrub found damage (status().damage says what), read cheaply for every read.
  bool damaged() const { return published_damaged_.load(); }
  std::chrono::steady_clock::time_point leader_contact() const override {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(published_leader_contact_.load()));
  }
  // How long each synced log write took.
  const Histogram& sync_latency() const { return sync_latency_; }
  fsm::StateMachine& state_machine() { return *fsm_; }
  raft::NodeId id() const { return options_.id; }

  // transport::Receiver
  void receive(raft::Message m, transport::Sender sender) override;
  void unreachable(raft::NodeId peer) override;
  Result<std::string> begin_snapshot_receive(transport::Sender sender) override;
  void abort_snapshot_receive(const std::string& staged_dir) override;
  Status finish_snapshot_receive(raft::Message m, transport::Sender sender,
                                 const std::string& staged_dir,
                                 storage::SnapshotInfo info) override;

 private:
  Node(NodeOptions options, std::unique_ptr<fsm::StateMachine> fsm,
       transport::Transport* transport);

  // Start-up (node_storage.cc).
  Status open_storage();
  Status replay_metadata(raft::Index from, raft::Index to);
  Status load_node_file(const std::string& snapshot_dir);

  // The raft loop and its mailbox (node.cc). The mailbox is shared so that a transport callback
  // that outlives the node posts into a closed mailbox instead of a destroyed one.
  struct Mailbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    bool closed = false;
  };
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
  void run();
  void handle_ready();
  void fail(Status s);
  void fail_pending(const Status& why);
  // Steps a message from the network through the inbound rules and the core; counts and logs
  // (at most once a second) what breaks the protocol.
  void step_from_network(raft::Message m, transport::Sender sender, bool from_snapshot_stream);
  void count_violation(const std::string& kind, raft::NodeId from);
  void add_waiter(const raft::ProposalId& id, ProposeCallback done);
  void publish_status();
  // On a tick: hands leadership to a preferred member if it is time to (preferred_leaders).
  void prefer_leader();

  // Reads (node_reads.cc).
  struct ReadBatch {
    std::vector<StatusCallback> reads;
    uint64_t issued_tick = 0;
  };
  static void fail_reads(ReadBatch& batch, const Status& why);
  void issue_reads();
  void expire_reads();
  void serve_reads();

  // ReadySink (node_apply.cc).
  const raft::HardState& stored_hard_state() const override { return log_->hard_state(); }
  raft::Index stored_last_index() const override { return log_->last_index(); }
  Status save(const std::vector<raft::Entry>& entries,
              const std::optional<raft::HardState>& hard_state, bool sync) override;
  Status install_snapshot(const raft::SnapshotMeta& meta) override;
  void send(std::vector<raft::Message> messages) override;
  void send_snapshot(raft::Message m) override;
  Status apply(std::span<const raft::Entry> committed) override;
  void read_states(std::vector<raft::ReadState> states) override;
  // Applying commands through the session table.
  struct Pending;
  Status apply_commands(Pending& pending);
  void answer_waiters(std::span<const raft::Entry> entries, std::map<raft::Index, Outcome>& done);
  void apply_membership_change(const raft::Entry& e);
  // Makes `m` the membership in force from `index` on (the newest in the history).
  void record_membership(raft::Index index, cluster::Membership m);
  void record_checkpoint(raft::Index index);
  // Applies a replacement (envelope.h) at `e`: a failure of the backend is returned (the node
  // stops); a refusal every node makes alike goes to *refused, and nothing changes.
  Status replace_state(std::string_view backup, const raft::Entry& e, Status* refused);
  const cluster::Membership& membership() const { return membership_history_.rbegin()->second; }

  // Scrubbing (scrub.cc): a thread that re-reads what the node stores now and then.
  void scrub_loop();
  Status scrub_once();

  // Snapshots (node_snapshot.cc).
  // InvalidArgument if another backend wrote the snapshot (another program, or --fsm changed).
  Status check_backend(const storage::SnapshotInfo& info) const;
  void maybe_snapshot();
  // The state machine's point-in-time view into *view; a non-ok return is the backend failing
  // (what it threw), the node's to stop on. On the raft loop, between batches.
  Status take_view(Result<std::unique_ptr<fsm::Snapshot>>* view);
  void write_snapshot(std::unique_ptr<fsm::Snapshot> snap, storage::SnapshotInfo info,
                      std::string node_file);
  void snapshot_written(Result<storage::SnapshotInfo> sealed);
  std::string node_file() const;
  void unpin_snapshot(raft::Index index);
  // Releases the snapshots of broken streams no peer will resume any more.
  void expire_broken_streams();
  void seal_received_snapshot(raft::Message m, transport::Sender sender,
                              const std::string& staged_dir, storage::SnapshotInfo info);

  const NodeOptions options_;
  std::unique_ptr<fsm::StateMachine> fsm_;
  transport::Transport* transport_;

  // Owned by the raft loop thread.
  std::unique_ptr<storage::LogStore> log_;
  std::unique_ptr<raft::RawNode> core_;
  std::unique_ptr<ReadyPipeline> pipeline_;
  raft::Index applied_ = 0;
  raft::Index last_snapshot_index_ = 0;
  // Per peer, the snapshot a stream to it was carrying when it broke off, pinned until `until`:
  // sent again rather than a newer one, the peer resumes what it kept (transport/frame.h).
  struct BrokenStream {
    raft::Index index = 0;
    Clock::time_point until;
  };
  std::map<raft::NodeId, BrokenStream> broken_streams_;
  // The membership as of each applied change since the last snapshot (and the one in force at
  // it), to label a snapshot taken at an index between two changes; the last is the current.
  std::map<raft::Index, cluster::Membership> membership_history_;
  // Counts the changes of the membership in force, so that status copies it only when it moved.
  uint64_t membership_version_ = 0;
  uint64_t published_membership_version_ = 0;
  SessionTable sessions_;
  // The latest proposal time among the commands that changed the session table (envelope.h).
  uint64_t session_time_ms_ = 0;
  struct Waiter {
    raft::Term term;
    ProposeCallback done;
  };
  std::map<raft::Index, Waiter> waiters_;
  uint64_t next_read_id_ = 0;
  uint64_t ticks_ = 0;
  // prefer_leader(): the term this node leads (0: it does not), since which tick; when it last
  // handed over; how long it leads before it hands over (doubled when leadership came back to it
  // soon after); the tick each peer was last heard from.
  raft::Term leading_term_ = 0;
  uint64_t leading_since_tick_ = 0;
  uint64_t handed_over_at_tick_ = 0;
  uint64_t hold_ticks_ = 0;
  static constexpr uint64_t kMaxPreferredLeaderHoldTicks = 1 << 16;
  std::map<raft::NodeId, uint64_t> heard_at_tick_;
  // At most one ReadIndex round is in flight; reads that arrive meanwhile wait for the next one,
  // so that one heartbeat round confirms many reads under load.
  ReadBatch reads_to_issue_;
  std::map<std::string, ReadBatch> reads_waiting_index_;
  std::multimap<raft::Index, StatusCallback> reads_waiting_apply_;
  bool snapshot_in_progress_ = false;
  bool staging_view_ = false;  // stage_view() is writing one on backup_thread_
  Clock::time_point last_snapshot_time_;
  bool draining_ = false;
  std::thread snapshot_thread_;
  std::thread backup_thread_;  // writes the view stage_view() took
  // Waits for the threads that read the state machine beside the raft loop (a snapshot being
  // written, a staged view), before it is replaced.
  void join_state_readers();
  Status failure_;
  Clock::time_point leader_contact_;
  Clock::time_point last_violation_log_;
  raft::NodeId last_leader_ = raft::kNoNode;
  uint64_t leader_changes_ = 0;
  std::vector<StatusObserver> observers_;
  // What observers were last told about (see StatusObserver).
  struct Observed {
    raft::Role role = raft::Role::kFollower;
    raft::NodeId leader = raft::kNoNode;
    bool learner = false;
    raft::Term term = 0;
    uint64_t membership_version = 0;
    bool healthy = true;
    bool undamaged = true;
    raft::Index checkpoint = 0;
    uint64_t snapshots_taken = 0;
    uint64_t snapshots_installed = 0;
    bool operator==(const Observed&) const = default;
  };
  Observed observed_;

  // Shared with other threads.
  mutable std::mutex store_mu_;  // the snapshot store
  std::mutex receive_mu_;        // receive_thread_
  std::thread receive_thread_;   // verifies and seals a snapshot received from the leader
  std::thread scrub_thread_;
  Cancel scrub_cancel_;  // set by stop(): the scrub thread waits on it and its passes stop
  // Checkpoint index -> state hash, the newest kKeptCheckpoints (guarded by status_mu_).
  static constexpr size_t kKeptCheckpoints = 64;
  std::map<raft::Index, uint64_t> checkpoint_hashes_;
  std::unique_ptr<storage::SnapshotStore> snapshots_;
  std::shared_ptr<Mailbox> mailbox_ = std::make_shared<Mailbox>();
  std::once_flag stop_once_;
  mutable std::mutex status_mu_;
  NodeStatus status_;
  std::atomic<raft::Index> published_applied_{0};
  std::atomic<bool> published_damaged_{false};
  std::atomic<raft::NodeId> published_leader_{raft::kNoNode};
  std::atomic<std::chrono::steady_clock::rep> published_leader_contact_{0};
  Histogram sync_latency_;
  std::thread loop_;
};

// "leader", "follower", "candidate" (pre-candidates too) or "learner": the role an operator sees.
const char* role_label(const raft::NodeStatus& status);

// The file the node adds to every snapshot beside the state machine's (its session table).
// State machines must not write files whose names begin with "raftnginx.".
inline constexpr const char* kNodeSnapshotFile = "raftnginx.node";

}  // namespace raftnginx::node
