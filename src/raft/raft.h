// Raft: the consensus state machine of one node (paper Fig. 2, thesis chapters 3, 4, 6, 9).
//
// Pure and single-threaded: it changes state only when called, and its outputs (messages, read
// states) wait in queues that RawNode drains into a Ready. Use RawNode; this class is its engine.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "raft/config.h"
#include "raft/progress.h"
#include "raft/raft_log.h"
#include "raft/random.h"

namespace raftnginx::raft {

// Where a proposal landed: it is committed when the entry at `index` with `term` is applied.
struct ProposalId {
  Index index = 0;
  Term term = 0;
};

class Raft {
 public:
  // REQUIRES: config.validate() is ok; commit and applied are consistent with the storage (see
  // RawNode::create, which checks them).
  Raft(const Config& config, const Storage& storage, const HardState& hard_state, ConfState conf,
       Index committed, Index applied);

  void tick();
  // A message from a peer; a message that breaks the protocol is dropped and named.
  Violation step(Message m);
  Result<ProposalId> propose(std::string data);
  Result<ProposalId> propose_conf_change(const ConfChange& cc);
  Status read_index(std::string context);
  Status transfer_leadership(NodeId to);
  void report_unreachable(NodeId id);
  void report_snapshot(NodeId id, bool succeeded);
  void campaign_now();

  // Called by RawNode as the runtime acknowledges a Ready.
  void on_entries_stable(Index index, Term term);
  void on_snapshot_installed(const SnapshotMeta& meta);
  void on_applied(const std::vector<Entry>& applied_entries);
  // Sends what proposals and ReadIndex requests since the last Ready have queued.
  void flush();

  NodeId id() const { return id_; }
  Term term() const { return term_; }
  NodeId vote() const { return vote_; }
  Role role() const { return role_; }
  NodeId leader() const { return leader_; }
  const ConfState& conf() const { return conf_; }
  const RaftLog& log() const { return log_; }
  RaftLog& log() { return log_; }
  const std::map<NodeId, Progress>& progress() const { return progress_; }
  NodeId lead_transferee() const { return lead_transferee_; }
  HardState hard_state() const { return HardState{term_, vote_, log_.committed()}; }
  bool has_queued_output() const {
    return !outbox_.empty() || !read_states_.empty() || broadcast_pending_ ||
           read_heartbeat_pending_;
  }
  std::vector<Message> take_messages() { return std::exchange(outbox_, {}); }
  std::vector<ReadState> take_read_states() { return std::exchange(read_states_, {}); }

 private:
  enum class Campaign : uint8_t { kPreElection, kElection, kTransfer };

  struct PendingRead {
    uint64_t seq;  // heartbeat round that must be acknowledged by a majority
    Index index;   // the commit index when the read arrived
    NodeId from;
    std::string context;
  };

  // Role transitions (paper Fig. 4).
  void become_follower(Term term, NodeId leader);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  void reset(Term term);
  void campaign(Campaign type);
  bool promotable() const;
  // Membership takes effect when applied. A node that knows of a committed change it has not
  // applied yet would count votes under a membership two changes old (two disjoint majorities
  // become possible), so it does not campaign until it has applied it.
  bool has_unapplied_conf_change() const;
  bool past_election_timeout() const { return election_elapsed_ >= randomized_election_timeout_; }

  void tick_election();
  void tick_heartbeat();

  Violation step_leader(Message& m);
  Violation step_candidate(Message& m);
  Violation step_follower(Message& m);
  void handle_vote_request(const Message& m);
  Violation handle_append(Message& m);
  Violation handle_heartbeat(const Message& m);
  Violation handle_snapshot(const Message& m);
  Violation handle_append_response(const Message& m, Progress& pr);
  void handle_heartbeat_response(const Message& m, Progress& pr);

  // Leader side of replication.
  bool send_append(NodeId to, bool send_if_empty);
  bool send_snapshot(NodeId to, Progress& pr);
  void send_heartbeat(NodeId to, const Progress& pr);
  void broadcast_append();
  void broadcast_heartbeat();
  bool maybe_commit();
  bool quorum_active();
  void leader_transfer(NodeId to);
  void abort_leader_transfer() { lead_transferee_ = kNoNode; }
  void sync_progress_with_conf();

  // ReadIndex (thesis 6.4).
  void leader_read(NodeId from, std::string context);
  void confirm_reads();
  void release_read(const PendingRead& read);
  bool committed_in_current_term() const;

  Status check_can_propose() const;
  ProposalId append_entry(EntryType type, std::string data);
  void send(Message m);

  const NodeId id_;
  const int election_timeout_;
  const int heartbeat_timeout_;
  const uint64_t max_msg_bytes_;
  const size_t max_msg_entries_;
  const size_t max_inflight_msgs_;
  const uint64_t max_inflight_bytes_;
  const uint64_t max_uncommitted_bytes_;
  const bool pre_vote_;
  const bool check_quorum_;

  Term term_;
  NodeId vote_;
  RaftLog log_;
  Role role_ = Role::kFollower;
  NodeId leader_ = kNoNode;
  ConfState conf_;
  // Leader only: one entry per member, the leader's own included.
  std::map<NodeId, Progress> progress_;
  // Candidate only: the answers received in this election.
  std::map<NodeId, bool> votes_;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  Random random_;

  NodeId lead_transferee_ = kNoNode;
  // Index of the latest membership change (or of the leader's first entry); another change may
  // be proposed only once it is applied.
  Index pending_conf_index_ = 0;

  // Leader only: bytes of entries appended in this term and not yet applied.
  uint64_t uncommitted_bytes_ = 0;
  // Proposals or a commit are waiting to be sent (batched until the next Ready).
  bool broadcast_pending_ = false;
  bool read_heartbeat_pending_ = false;
  uint64_t read_seq_ = 0;
  std::deque<PendingRead> pending_reads_;
  // Reads that arrived before this leader committed an entry of its term: its commit index is
  // not yet known to cover every committed entry.
  std::vector<PendingRead> reads_awaiting_commit_;

  std::vector<Message> outbox_;
  std::vector<ReadState> read_states_;
};

}  // namespace raftnginx::raft
