#include "raft/raft.h"

#include <algorithm>

#include "raft/quorum.h"

namespace raftnginx::raft {

Raft::Raft(const Config& config, const Storage& storage, const HardState& hard_state,
           ConfState conf, Index committed, Index applied)
    : id_(config.id),
      election_timeout_(config.election_tick),
      heartbeat_timeout_(config.heartbeat_tick),
      max_msg_bytes_(config.max_msg_bytes),
      max_msg_entries_(config.max_msg_entries),
      max_inflight_msgs_(config.max_inflight_msgs),
      max_inflight_bytes_(config.max_inflight_bytes),
      max_uncommitted_bytes_(config.max_uncommitted_bytes),
      pre_vote_(config.pre_vote),
      check_quorum_(config.check_quorum),
      term_(hard_state.term),
      vote_(hard_state.vote),
      log_(storage, committed, applied),
      conf_(std::move(conf)),
      random_(config.random_seed ^ (config.id * 0x9e3779b97f4a7c15ULL)) {
  become_follower(term_, kNoNode);
}

// ---------------------------------------------------------------------------------------------
// Role transitions

void Raft::reset(Term term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
  }
  leader_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  randomized_election_timeout_ =
      election_timeout_ +
      static_cast<int>(random_.uniform(static_cast<uint64_t>(election_timeout_)));
  abort_leader_transfer();
  votes_.clear();
  progress_.clear();
  uncommitted_bytes_ = 0;
  broadcast_pending_ = false;
  read_heartbeat_pending_ = false;
  pending_reads_.clear();
  reads_awaiting_commit_.clear();
}

void Raft::become_follower(Term term, NodeId leader) {
  reset(term);
  role_ = Role::kFollower;
  leader_ = leader;
}

void Raft::become_pre_candidate() {
  // A pre-candidate keeps its term and vote: it only asks.
  reset(term_);
  role_ = Role::kPreCandidate;
}

void Raft::become_candidate() {
  reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Raft::become_leader() {
  reset(term_);
  role_ = Role::kLeader;
  leader_ = id_;
  sync_progress_with_conf();
  Progress& self = progress_.at(id_);
  self.match_index = log_.last_stable_index();
  self.become_replicate();
  // Entries earlier leaders left uncommitted count against the limit too; otherwise a cluster
  // without a quorum grows its log by the whole limit at every election.
  if (max_uncommitted_bytes_ && log_.last_index() > log_.committed()) {
    auto tail = log_.slice(log_.committed() + 1, log_.last_index() + 1, max_uncommitted_bytes_);
    if (tail.ok()) {
      for (const Entry& e : *tail)
        uncommitted_bytes_ += entry_size(e);
    }
  }
  // Thesis 6.4 and 4.1: a no-op entry of the new term. Once it commits, the leader's commit index
  // covers every committed entry, and only then may it change membership.
  pending_conf_index_ = append_entry(EntryType::kNormal, {}).index;
}

bool Raft::has_unapplied_conf_change() const {
  if (log_.committed() <= log_.applied())
    return false;
  auto entries = log_.slice(log_.applied() + 1, log_.committed() + 1, UINT64_MAX);
  if (!entries.ok())
    return false;
  for (const Entry& e : *entries) {
    if (e.type == EntryType::kConfChange)
      return true;
  }
  return false;
}

bool Raft::promotable() const {
  return conf_.voters.count(id_) > 0 && !log_.unstable_snapshot().has_value();
}

void Raft::campaign(Campaign type) {
  if (!promotable() || has_unapplied_conf_change())
    return;
  MessageType request;
  Term request_term;
  if (type == Campaign::kPreElection) {
    become_pre_candidate();
    request = MessageType::kPreVote;
    request_term = term_ + 1;
  } else {
    become_candidate();
    request = MessageType::kVote;
    request_term = term_;
  }
  votes_[id_] = true;
  if (majority_vote(conf_.voters, votes_) == VoteResult::kWon) {
    // A single-voter cluster wins at once.
    if (type == Campaign::kPreElection) {
      campaign(Campaign::kElection);
    } else {
      become_leader();
    }
    return;
  }
  for (NodeId voter : conf_.voters) {
    if (voter == id_)
      continue;
    Message m;
    m.type = request;
    m.to = voter;
    m.term = request_term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    m.transfer = type == Campaign::kTransfer;
    send(std::move(m));
  }
}

// ---------------------------------------------------------------------------------------------
// Time

void Raft::tick() {
  if (role_ == Role::kLeader) {
    tick_heartbeat();
  } else {
    tick_election();
  }
}

void Raft::campaign_now() {
  if (role_ != Role::kLeader)
    campaign(pre_vote_ ? Campaign::kPreElection : Campaign::kElection);
}

void Raft::tick_election() {
  ++election_elapsed_;
  if (promotable() && past_election_timeout()) {
    election_elapsed_ = 0;
    campaign(pre_vote_ ? Campaign::kPreElection : Campaign::kElection);
  }
}

void Raft::tick_heartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= election_timeout_) {
    election_elapsed_ = 0;
    if (check_quorum_ && !quorum_active()) {
      become_follower(term_, kNoNode);
      return;
    }
    // A transfer that did not finish within an election timeout is abandoned (thesis 3.10).
    abort_leader_transfer();
  }
  if (heartbeat_elapsed_ >= heartbeat_timeout_) {
    heartbeat_elapsed_ = 0;
    broadcast_heartbeat();
  }
}

bool Raft::quorum_active() {
  std::map<NodeId, bool> active;
  for (auto& [id, pr] : progress_) {
    if (id == id_) {
      active[id] = true;
    } else {
      active[id] = pr.recent_active;
      pr.recent_active = false;
    }
  }
  return majority_vote(conf_.voters, active) == VoteResult::kWon;
}

// ---------------------------------------------------------------------------------------------
// Messages

void Raft::send(Message m) {
  m.from = id_;
  // Vote requests and pre-vote traffic carry their own term; everything else ours.
  if (m.type != MessageType::kVote && m.type != MessageType::kPreVote &&
      m.type != MessageType::kVoteResponse && m.type != MessageType::kPreVoteResponse) {
    m.term = term_;
  }
  outbox_.push_back(std::move(m));
}

Violation Raft::step(Message m) {
  if (m.from == id_)
    return Violation::kFromSelf;
  if (m.term >= kMaxTerm || (m.term > term_ && m.term - term_ > kMaxTermJump))
    return Violation::kTermTooLarge;
  if (m.term > term_) {
    if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
      // Leader lease (thesis 4.2.3): while we hear from a leader, a vote request is a disruption
      // (a removed or partitioned node), unless it comes from a leadership transfer.
      const bool in_lease =
          check_quorum_ && leader_ != kNoNode && election_elapsed_ < election_timeout_;
      if (in_lease && !m.transfer)
        return Violation::kNone;
    }
    if (m.type == MessageType::kPreVote) {
      // A pre-vote never changes our term.
    } else if (m.type == MessageType::kPreVoteResponse && !m.reject) {
      // A grant echoes the term we would campaign in; nothing to adopt.
    } else {
      const bool from_leader = m.type == MessageType::kAppend ||
                               m.type == MessageType::kHeartbeat ||
                               m.type == MessageType::kSnapshot;
      become_follower(m.term, from_leader ? m.from : kNoNode);
    }
  } else if (m.term < term_) {
    if ((check_quorum_ || pre_vote_) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kAppend)) {
      // A stale leader (back from a partition) learns the new term from this answer and steps
      // down; without it, pre-vote and lease could keep it cut off forever.
      Message resp;
      resp.type = MessageType::kAppendResponse;
      resp.to = m.from;
      send(std::move(resp));
    } else if (m.type == MessageType::kPreVote) {
      Message resp;
      resp.type = MessageType::kPreVoteResponse;
      resp.to = m.from;
      resp.term = term_;
      resp.reject = true;
      send(std::move(resp));
    }
    return Violation::kNone;
  }

  if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
    handle_vote_request(m);
    return Violation::kNone;
  }
  switch (role_) {
    case Role::kLeader:
      return step_leader(m);
    case Role::kPreCandidate:
    case Role::kCandidate:
      return step_candidate(m);
    case Role::kFollower:
      break;
  }
  return step_follower(m);
}

void Raft::handle_vote_request(const Message& m) {
  // Paper 5.2 and 5.4.1: one vote per term, and only for a log at least as up-to-date as ours.
  // A pre-vote for a future term is granted on the log alone.
  const bool can_vote = vote_ == m.from || (vote_ == kNoNode && leader_ == kNoNode) ||
                        (m.type == MessageType::kPreVote && m.term > term_);
  Message resp;
  resp.type =
      m.type == MessageType::kVote ? MessageType::kVoteResponse : MessageType::kPreVoteResponse;
  resp.to = m.from;
#ifdef RAFTNGINX_FAULT_VOTE_IGNORES_LOG
  // Deliberately broken (simulator self-test): the election restriction is skipped.
  const bool log_ok = true;
#else
  const bool log_ok = log_.is_up_to_date(m.index, m.log_term);
#endif
  if (can_vote && log_ok) {
    resp.term = m.term;
    if (m.type == MessageType::kVote) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    resp.term = term_;
    resp.reject = true;
  }
  send(std::move(resp));
}

Violation Raft::step_follower(Message& m) {
  const bool from_leader_role = m.type == MessageType::kAppend ||
                                m.type == MessageType::kHeartbeat ||
                                m.type == MessageType::kSnapshot;
  // Election safety: one leader per term. Leader traffic in our term from anyone else is forged.
  if (from_leader_role && leader_ != kNoNode && m.from != leader_)
    return Violation::kSecondLeader;
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      leader_ = m.from;
      return handle_append(m);
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      leader_ = m.from;
      return handle_heartbeat(m);
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      leader_ = m.from;
      return handle_snapshot(m);
    case MessageType::kTimeoutNow:
    case MessageType::kReadIndexResponse:
      // Only our leader hands leadership over or gives read points (one from anyone else could
      // make a read miss committed writes). Without a known leader (just restarted), it is an
      // answer to someone we were before: dropped.
      if (m.from != leader_)
        return leader_ == kNoNode ? Violation::kNone : Violation::kNotFromLeader;
      if (m.type == MessageType::kTimeoutNow) {
        campaign(Campaign::kTransfer);
      } else {
        read_states_.push_back(ReadState{m.index, std::move(m.context)});
      }
      return Violation::kNone;
    case MessageType::kTransferLeader:
      if (leader_ != kNoNode) {
        m.to = leader_;
        send(std::move(m));
      }
      return Violation::kNone;
    default:
      return Violation::kNone;
  }
}

Violation Raft::step_candidate(Message& m) {
  const MessageType expected =
      role_ == Role::kPreCandidate ? MessageType::kPreVoteResponse : MessageType::kVoteResponse;
  switch (m.type) {
    case MessageType::kAppend:
      become_follower(m.term, m.from);
      return handle_append(m);
    case MessageType::kHeartbeat:
      become_follower(m.term, m.from);
      return handle_heartbeat(m);
    case MessageType::kSnapshot:
      become_follower(m.term, m.from);
      return handle_snapshot(m);
    default:
      break;
  }
  if (m.type != expected)
    return Violation::kNone;
  votes_.emplace(m.from, !m.reject);
  switch (majority_vote(conf_.voters, votes_)) {
    case VoteResult::kWon:
      if (role_ == Role::kPreCandidate) {
        campaign(Campaign::kElection);
      } else {
        become_leader();
      }
      break;
    case VoteResult::kLost:
      become_follower(term_, kNoNode);
      break;
    case VoteResult::kPending:
      break;
  }
  return Violation::kNone;
}

Violation Raft::step_leader(Message& m) {
  auto it = progress_.find(m.from);
  switch (m.type) {
    case MessageType::kAppendResponse:
      if (it != progress_.end())
        return handle_append_response(m, it->second);
      return Violation::kNone;
    case MessageType::kHeartbeatResponse:
      if (it != progress_.end())
        handle_heartbeat_response(m, it->second);
      return Violation::kNone;
    case MessageType::kReadIndex:
      leader_read(m.from, std::move(m.context));
      return Violation::kNone;
    case MessageType::kTransferLeader:
      leader_transfer(m.index);
      return Violation::kNone;
    case MessageType::kAppend:
    case MessageType::kHeartbeat:
    case MessageType::kSnapshot:
    case MessageType::kTimeoutNow:
      return Violation::kSecondLeader;  // we lead this term
    default:
      return Violation::kNone;
  }
}

// ---------------------------------------------------------------------------------------------
// Follower side of replication

Violation Raft::handle_append(Message& m) {
  // What a leader sends: entries right after prev, of terms that never decrease, none later than
  // the message's own.
  Term prev_term = m.log_term;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    if (e.index != m.index + 1 + i || e.term < prev_term || e.term > m.term)
      return Violation::kMalformedAppend;
    prev_term = e.term;
  }
  if (m.log_term > m.term)
    return Violation::kMalformedAppend;
  Message resp;
  resp.type = MessageType::kAppendResponse;
  resp.to = m.from;
  if (m.index < log_.committed()) {
    // Everything up to our commit index already matches the leader's log.
    resp.index = log_.committed();
    send(std::move(resp));
    return Violation::kNone;
  }
  if (log_.match_term(m.index, m.log_term)) {
    // Leader Completeness: no real leader contradicts an entry we know is committed.
    const Index conflict = log_.find_conflict(m.entries);
    if (conflict != 0 && conflict <= log_.committed())
      return Violation::kOverwritesCommitted;
  }
  if (auto last_new = log_.maybe_append(m.index, m.log_term, m.commit, std::move(m.entries))) {
    resp.index = *last_new;
  } else {
    // Tell the leader where our log could match so that it skips a whole term at a time.
    auto [hint_index, hint_term] = log_.find_conflict_by_term(m.index, m.log_term);
    resp.reject = true;
    resp.index = m.index;
    resp.reject_hint = hint_index;
    resp.log_term = hint_term;
  }
  send(std::move(resp));
  return Violation::kNone;
}

Violation Raft::handle_heartbeat(const Message& m) {
  // The leader sends min(matchIndex, commitIndex), which our log is known to hold.
  if (m.commit > log_.last_index())
    return Violation::kCommitPastLog;
  log_.commit_to(m.commit);
  Message resp;
  resp.type = MessageType::kHeartbeatResponse;
  resp.to = m.from;
  resp.read_seq = m.read_seq;
  send(std::move(resp));
  return Violation::kNone;
}

Violation Raft::handle_snapshot(const Message& m) {
  const SnapshotMeta& snap = m.snapshot;
  if (snap.index == 0 || snap.term == 0 || snap.term > m.term)
    return Violation::kMalformedSnapshot;
  Message resp;
  resp.type = MessageType::kAppendResponse;
  resp.to = m.from;
  if (snap.index <= log_.committed()) {
    resp.index = log_.committed();
  } else if (log_.match_term(snap.index, snap.term)) {
    // We hold the entries the snapshot covers: commit them instead of replacing the log.
    log_.commit_to(snap.index);
    resp.index = log_.committed();
  } else {
    // The membership changes with the snapshot once it is installed (on_snapshot_installed), not
    // now: committed entries handed out before it must still apply to the older membership.
    log_.restore(snap);
    resp.index = snap.index;
  }
  send(std::move(resp));
  return Violation::kNone;
}

// ---------------------------------------------------------------------------------------------
// Leader side of replication

bool Raft::send_append(NodeId to, bool send_if_empty) {
  Progress& pr = progress_.at(to);
  if (pr.is_paused())
    return false;
  const Index prev = pr.next_index - 1;
  auto prev_term = log_.term(prev);
  if (!prev_term.ok())
    return send_snapshot(to, pr);
  const Index hi = std::min(log_.last_index() + 1, pr.next_index + max_msg_entries_);
  auto entries = log_.slice(pr.next_index, hi, max_msg_bytes_);
  if (!entries.ok())
    return send_snapshot(to, pr);
  if (entries->empty() && !send_if_empty)
    return false;

  Message m;
  m.type = MessageType::kAppend;
  m.to = to;
  m.index = prev;
  m.log_term = *prev_term;
  m.entries = std::move(entries).value();
  m.commit = log_.committed();
  if (pr.state == Progress::State::kReplicate && !m.entries.empty()) {
    uint64_t bytes = 0;
    for (const Entry& e : m.entries)
      bytes += entry_size(e);
    pr.optimistic_update(m.entries.back().index);
    pr.inflights.add(m.entries.back().index, bytes);
  } else if (pr.state == Progress::State::kProbe) {
    pr.probe_sent = true;
  }
  send(std::move(m));
  return true;
}

bool Raft::send_snapshot(NodeId to, Progress& pr) {
  // A peer we have not heard from lately is likely down: do not stream a snapshot into the void.
  if (!pr.recent_active)
    return false;
  auto snap = log_.snapshot();
  if (!snap.ok())
    return false;
  pr.become_snapshot(snap->index);
  Message m;
  m.type = MessageType::kSnapshot;
  m.to = to;
  m.snapshot = std::move(snap).value();
  send(std::move(m));
  return true;
}

void Raft::send_heartbeat(NodeId to, const Progress& pr) {
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  m.commit = std::min(pr.match_index, log_.committed());
  m.read_seq = read_seq_;
  send(std::move(m));
}

void Raft::broadcast_append() {
  for (auto& [id, pr] : progress_) {
    if (id != id_)
      send_append(id, true);
  }
}

void Raft::broadcast_heartbeat() {
  for (const auto& [id, pr] : progress_) {
    if (id != id_)
      send_heartbeat(id, pr);
  }
}

void Raft::flush() {
  if (role_ != Role::kLeader)
    return;
  if (broadcast_pending_) {
    broadcast_pending_ = false;
    broadcast_append();
  }
  if (read_heartbeat_pending_) {
    read_heartbeat_pending_ = false;
    broadcast_heartbeat();
  }
}

Violation Raft::handle_append_response(const Message& m, Progress& pr) {
  if (!m.reject && m.index > log_.last_index())
    return Violation::kAckPastLog;
  pr.recent_active = true;
  if (m.reject) {
    Index hint = m.reject_hint;
    if (m.log_term > 0)
      hint = log_.find_conflict_by_term(m.reject_hint, m.log_term).first;
    if (pr.maybe_decrease_to(m.index, hint)) {
      if (pr.state == Progress::State::kReplicate)
        pr.become_probe();
      send_append(m.from, true);
    }
    return Violation::kNone;
  }
  const bool was_paused = pr.is_paused();
  if (!pr.maybe_update(m.index))
    return Violation::kNone;
  switch (pr.state) {
    case Progress::State::kProbe:
      pr.become_replicate();
      break;
    case Progress::State::kSnapshot:
      if (pr.match_index >= pr.pending_snapshot)
        pr.become_probe();
      break;
    case Progress::State::kReplicate:
      pr.inflights.free_up_to(m.index);
      break;
  }
  if (maybe_commit()) {
    broadcast_pending_ = true;
  } else if (was_paused) {
    send_append(m.from, true);
  }
  // Pipeline: keep the window full while there is more to send.
  while (send_append(m.from, false)) {
  }
  if (m.from == lead_transferee_ && pr.match_index == log_.last_index()) {
    Message timeout;
    timeout.type = MessageType::kTimeoutNow;
    timeout.to = m.from;
    send(std::move(timeout));
  }
  return Violation::kNone;
}

void Raft::handle_heartbeat_response(const Message& m, Progress& pr) {
  pr.recent_active = true;
  pr.probe_sent = false;
  // A full window whose acknowledgements were lost would never drain: free one slot.
  if (pr.state == Progress::State::kReplicate && pr.inflights.full())
    pr.inflights.free_first();
  if (pr.match_index < log_.last_index())
    send_append(m.from, true);
  if (m.read_seq > pr.read_ack) {
    pr.read_ack = m.read_seq;
    confirm_reads();
  }
}

bool Raft::maybe_commit() {
  std::vector<uint64_t> matches;
  matches.reserve(conf_.voters.size());
  for (NodeId voter : conf_.voters) {
    auto it = progress_.find(voter);
    matches.push_back(it == progress_.end() ? 0 : it->second.match_index);
  }
  if (!log_.maybe_commit(majority_value(conf_.voters, matches), term_))
    return false;
  if (!reads_awaiting_commit_.empty() && committed_in_current_term()) {
    for (PendingRead& read : std::exchange(reads_awaiting_commit_, {})) {
      leader_read(read.from, std::move(read.context));
    }
  }
  return true;
}

void Raft::report_unreachable(NodeId id) {
  if (role_ != Role::kLeader)
    return;
  auto it = progress_.find(id);
  if (it == progress_.end())
    return;
  // What was in flight is likely lost: go back to probing.
  if (it->second.state == Progress::State::kReplicate)
    it->second.become_probe();
}

void Raft::report_snapshot(NodeId id, bool succeeded) {
  if (role_ != Role::kLeader)
    return;
  auto it = progress_.find(id);
  if (it == progress_.end() || it->second.state != Progress::State::kSnapshot)
    return;
  Progress& pr = it->second;
  if (!succeeded)
    pr.pending_snapshot = 0;
  // Either way, wait for the follower's answer (or the next heartbeat) before sending more.
  pr.become_probe();
  pr.probe_sent = true;
}

// ---------------------------------------------------------------------------------------------
// Client requests

Status Raft::check_can_propose() const {
  if (role_ != Role::kLeader) {
    if (leader_ == kNoNode)
      return Status::not_leader("no leader is known");
    return Status::not_leader("the leader is node " + std::to_string(leader_));
  }
  if (lead_transferee_ != kNoNode) {
    return Status::busy("leadership is being transferred to node " +
                        std::to_string(lead_transferee_));
  }
  return Status();
}

ProposalId Raft::append_entry(EntryType type, std::string data) {
  const Index index = log_.last_index() + 1;
  Entry e{term_, index, type, std::move(data)};
  uncommitted_bytes_ += entry_size(e);
  log_.append({std::move(e)});
  broadcast_pending_ = true;
  return ProposalId{index, term_};
}

Result<ProposalId> Raft::propose(std::string data) {
  if (Status s = check_can_propose(); !s.ok())
    return s;
  // One entry may exceed the limit on its own; beyond that, wait for commits.
  if (max_uncommitted_bytes_ && uncommitted_bytes_ > 0 &&
      uncommitted_bytes_ + data.size() > max_uncommitted_bytes_) {
    return Status::busy("too many uncommitted entries: the leader cannot reach a quorum");
  }
  return append_entry(EntryType::kNormal, std::move(data));
}

Result<ProposalId> Raft::propose_conf_change(const ConfChange& cc) {
  if (Status s = check_can_propose(); !s.ok())
    return s;
  // One change at a time, and not before an entry of this term is applied (the bug in
  // single-server changes Ongaro described in 2015).
  if (pending_conf_index_ > log_.applied()) {
    return Status::busy("a membership change or the new leader's first entry is still pending");
  }
  auto next = apply_conf_change(conf_, cc);
  if (!next.ok())
    return next.status();
  ProposalId id = append_entry(EntryType::kConfChange, encode_conf_change(cc));
  pending_conf_index_ = id.index;
  return id;
}

Status Raft::read_index(std::string context) {
  if (role_ == Role::kLeader) {
    leader_read(id_, std::move(context));
    return Status();
  }
  if (leader_ == kNoNode)
    return Status::not_leader("no leader is known");
  Message m;
  m.type = MessageType::kReadIndex;
  m.to = leader_;
  m.context = std::move(context);
  send(std::move(m));
  return Status();
}

bool Raft::committed_in_current_term() const {
  auto t = log_.term(log_.committed());
  return t.ok() && *t == term_;
}

void Raft::leader_read(NodeId from, std::string context) {
  PendingRead read{0, log_.committed(), from, std::move(context)};
  if (conf_.voters.size() == 1 && conf_.voters.count(id_)) {
    // Sole voter: nobody else can be leader, no round needed.
    release_read(read);
    return;
  }
  if (!committed_in_current_term()) {
    reads_awaiting_commit_.push_back(std::move(read));
    return;
  }
  read.seq = ++read_seq_;
  pending_reads_.push_back(std::move(read));
  read_heartbeat_pending_ = true;
}

void Raft::confirm_reads() {
  std::vector<uint64_t> acks;
  acks.reserve(conf_.voters.size());
  for (NodeId voter : conf_.voters) {
    if (voter == id_) {
      acks.push_back(read_seq_);
      continue;
    }
    auto it = progress_.find(voter);
    acks.push_back(it == progress_.end() ? 0 : it->second.read_ack);
  }
  const uint64_t confirmed = majority_value(conf_.voters, acks);
  while (!pending_reads_.empty() && pending_reads_.front().seq <= confirmed) {
    release_read(pending_reads_.front());
    pending_reads_.pop_front();
  }
}

void Raft::release_read(const PendingRead& read) {
  if (read.from == id_) {
    read_states_.push_back(ReadState{read.index, read.context});
    return;
  }
  Message m;
  m.type = MessageType::kReadIndexResponse;
  m.to = read.from;
  m.index = read.index;
  m.context = read.context;
  send(std::move(m));
}

Status Raft::transfer_leadership(NodeId to) {
  if (role_ != Role::kLeader) {
    if (leader_ == kNoNode)
      return Status::not_leader("no leader is known");
    Message m;
    m.type = MessageType::kTransferLeader;
    m.to = leader_;
    m.index = to;
    send(std::move(m));
    return Status();
  }
  if (!conf_.voters.count(to)) {
    return Status::invalid_argument("node " + std::to_string(to) + " is not a voter");
  }
  leader_transfer(to);
  return Status();
}

void Raft::leader_transfer(NodeId to) {
  if (to == id_ || to == lead_transferee_ || !conf_.voters.count(to))
    return;
  lead_transferee_ = to;
  // The transfer must finish within an election timeout, or it is abandoned.
  election_elapsed_ = 0;
  const Progress& pr = progress_.at(to);
  if (pr.match_index == log_.last_index()) {
    Message m;
    m.type = MessageType::kTimeoutNow;
    m.to = to;
    send(std::move(m));
  } else {
    send_append(to, true);
  }
}

// ---------------------------------------------------------------------------------------------
// Acknowledgements from the runtime

void Raft::on_entries_stable(Index index, Term term) {
  log_.stable_to(index, term);
  if (role_ != Role::kLeader)
    return;
  Progress& self = progress_.at(id_);
  if (self.maybe_update(log_.last_stable_index()) && maybe_commit())
    broadcast_pending_ = true;
}

void Raft::on_snapshot_installed(const SnapshotMeta& meta) {
  log_.stable_snapshot_to(meta.index);
  log_.applied_to(meta.index);
  conf_ = meta.conf;
}

void Raft::on_applied(const std::vector<Entry>& applied_entries) {
  if (applied_entries.empty())
    return;
  log_.applied_to(applied_entries.back().index);
  for (const Entry& e : applied_entries) {
    uncommitted_bytes_ -= std::min(uncommitted_bytes_, entry_size(e));
    if (e.type != EntryType::kConfChange)
      continue;
    // An unreadable change (from a leader that broke the protocol), or one proposed against an
    // older membership, is skipped on every node alike.
    auto cc = decode_conf_change(e.data.view());
    if (!cc.ok())
      continue;
    auto next = apply_conf_change(conf_, *cc);
    if (!next.ok())
      continue;
    conf_ = std::move(next).value();
    if (role_ != Role::kLeader)
      continue;
    if (!conf_.voters.count(id_)) {
      // This leader removed itself; the others elect a successor.
      become_follower(term_, kNoNode);
      continue;
    }
    sync_progress_with_conf();
    if (lead_transferee_ != kNoNode && !conf_.voters.count(lead_transferee_)) {
      abort_leader_transfer();
    }
    // The majority may have changed.
    if (maybe_commit())
      broadcast_pending_ = true;
  }
}

void Raft::sync_progress_with_conf() {
  for (auto it = progress_.begin(); it != progress_.end();) {
    it = conf_.contains(it->first) ? std::next(it) : progress_.erase(it);
  }
  auto add = [this](NodeId id) {
    if (progress_.count(id))
      return;
    Progress pr(log_.last_index() + 1, max_inflight_msgs_, max_inflight_bytes_);
    // A new member has not had a chance to answer yet; treat it as alive so that it can be sent
    // a snapshot straight away.
    pr.recent_active = true;
    progress_.emplace(id, std::move(pr));
    broadcast_pending_ = true;
  };
  for (NodeId id : conf_.voters)
    add(id);
  for (NodeId id : conf_.learners)
    add(id);
  // A leader is always tracked, even when it is about to be removed.
  add(id_);
}

}  // namespace raftnginx::raft
