// RawNode: the consensus core's public face.
//
// The runtime drives it with tick(), step(), propose(), read_index(), transfer_leadership() and
// change_membership(), and takes its output as Ready batches. Handling a Ready, in this order:
//
//   1. Durability. Install `snapshot` if set, append `entries` (replacing any conflicting
//      suffix), and store `hard_state` if set, all in Storage; if `must_sync`, fsync before
//      going on. A crash before this completes must lose the whole batch or none of it.
//   2. Send `messages`. They may promise what step 1 made durable (a vote, an acknowledged
//      entry), so never send them before it. One exception (thesis 10.2.1): a leader's kAppend
//      and kHeartbeat promise nothing about its own disk, so when `hard_state` changes neither
//      term nor vote they may go out before step 1, and the followers' writes overlap the
//      leader's. The leader counts its own entries toward commitment only once advance() has
//      reported them stable.
//   3. Apply `committed_entries` to the state machine in order (after restoring `snapshot`
//      data, if any), and serve each ReadState in `read_states` once the state machine has
//      applied its index.
//   4. Call advance().
//
// Between ready() and advance() the core may still be ticked and stepped; ready() may not be
// called again until advance(). Nothing here blocks, reads a clock or does I/O.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "raft/raft.h"

namespace raftnginx::raft {

// Volatile state worth reporting: who leads, and our role.
struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;

  bool operator==(const SoftState&) const = default;
};

struct Ready {
  std::optional<SoftState> soft_state;   // set when it changed since the last Ready
  std::optional<HardState> hard_state;   // set when it changed: store it
  std::vector<Entry> entries;            // append to Storage
  std::optional<SnapshotMeta> snapshot;  // a snapshot from the leader to install
  std::vector<Entry> committed_entries;  // apply, in order
  std::vector<Message> messages;         // send once the above is durable
  std::vector<ReadState> read_states;    // linearizable once applied up to their index
  bool must_sync = false;                // step 1 must reach the disk (fsync) before step 2
};

// A follower's replication state as the leader sees it.
struct PeerStatus {
  NodeId id = kNoNode;
  bool voter = false;
  Index match_index = 0;
  Index next_index = 0;
  Progress::State state = Progress::State::kProbe;
  bool recent_active = false;
};

struct NodeStatus {
  NodeId id = kNoNode;
  Role role = Role::kFollower;
  bool learner = false;
  NodeId leader = kNoNode;
  HardState hard_state;
  Index applied = 0;
  Index first_index = 0;
  Index last_index = 0;
  ConfState conf;
  NodeId lead_transferee = kNoNode;
  std::vector<PeerStatus> peers;  // leader only
};

// The durable state a brand-new cluster starts from: one committed entry per initial member
// (term 1), so that the initial membership is in the log like every later change and a node that
// joins later learns it by replication. Every initial member must start from the same list. The
// membership takes effect when the first Ready hands these entries out and is advanced.
struct BootstrapState {
  std::vector<Entry> entries;
  HardState hard_state;
};
BootstrapState bootstrap_state(const ConfState& initial_members,
                               const std::map<NodeId, std::string>& contexts = {});

class RawNode {
 public:
  // Opens the core over `storage`. Corruption if the storage contradicts itself or
  // config.applied (a state machine ahead of the log); InvalidArgument for a bad config or a
  // state machine behind the latest snapshot (restore the snapshot into it first).
  static Result<std::unique_ptr<RawNode>> create(const Config& config, const Storage& storage);

  RawNode(const RawNode&) = delete;
  RawNode& operator=(const RawNode&) = delete;

  // One unit of logical time (the runtime calls it every few milliseconds).
  void tick() { raft_.tick(); }
  // A message from a peer. InvalidArgument if it is not addressed to this node;
  // ProtocolViolation (naming the raft::Violation) if it breaks the protocol: it was dropped.
  Status step(Message m);
  // Appends a command on the leader. NotLeader (naming the leader when known) elsewhere; Busy
  // during a leadership transfer.
  Result<ProposalId> propose(std::string data) { return raft_.propose(std::move(data)); }
  // Proposes one membership change. Busy while another change is not applied yet.
  Result<ProposalId> change_membership(const ConfChange& cc) {
    return raft_.propose_conf_change(cc);
  }
  // Asks for a linearizable read point; the answer arrives as a ReadState with the same
  // context. No answer comes if leadership changes meanwhile: the runtime times the request out.
  Status read_index(std::string context) { return raft_.read_index(std::move(context)); }
  // Hands leadership to a voter once it has caught up (forwarded to the leader by followers).
  Status transfer_leadership(NodeId to) { return raft_.transfer_leadership(to); }
  // The runtime could not reach a peer: stop pipelining to it.
  void report_unreachable(NodeId id) { raft_.report_unreachable(id); }
  // The outcome of every Snapshot message sent to `id`: delivered, or the stream failed. The
  // leader sends that follower nothing more until it hears this (or the follower's answer).
  void report_snapshot(NodeId id, bool succeeded) { raft_.report_snapshot(id, succeeded); }
  // Starts an election now, as if the election timer had expired.
  void campaign() { raft_.campaign_now(); }

  bool has_ready() const;
  Ready ready();
  void advance();

  NodeStatus status() const;
  NodeId id() const { return raft_.id(); }
  Role role() const { return raft_.role(); }
  NodeId leader() const { return raft_.leader(); }
  Term term() const { return raft_.term(); }
  HardState hard_state() const { return raft_.hard_state(); }
  const ConfState& conf() const { return raft_.conf(); }

 private:
  RawNode(const Config& config, const Storage& storage, const HardState& hs, ConfState conf,
          Index committed, Index applied);

  Raft raft_;
  const uint64_t max_apply_bytes_;
  SoftState prev_soft_;
  HardState prev_hard_;
  // What the outstanding Ready handed out, for advance().
  struct Handed {
    std::optional<SnapshotMeta> snapshot;
    std::optional<std::pair<Index, Term>> last_entry;
    std::vector<Entry> committed;
    HardState hard_state;
  };
  std::optional<Handed> handed_;
};

// Whether `m`, one of `rd.messages`, may be sent before `rd` is durable (the exception of step
// 2). `stored` is the hard state Storage held before `rd`.
bool may_send_before_durable(const Ready& rd, const Message& m, const HardState& stored);

}  // namespace raftnginx::raft
