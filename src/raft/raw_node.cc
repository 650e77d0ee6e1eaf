#include "raft/raw_node.h"

#include <algorithm>

namespace raftnginx::raft {

BootstrapState bootstrap_state(const ConfState& initial_members,
                               const std::map<NodeId, std::string>& contexts) {
  BootstrapState out;
  auto add = [&](ConfChangeType type, NodeId id) {
    const Index index = out.entries.size() + 1;
    auto context = contexts.find(id);
    const ConfChange cc{type, id, context == contexts.end() ? std::string() : context->second};
    out.entries.push_back(Entry{1, index, EntryType::kConfChange, encode_conf_change(cc)});
  };
  for (NodeId id : initial_members.voters)
    add(ConfChangeType::kAddVoter, id);
  for (NodeId id : initial_members.learners)
    add(ConfChangeType::kAddLearner, id);
  out.hard_state = HardState{1, kNoNode, out.entries.size()};
  return out;
}

Result<std::unique_ptr<RawNode>> RawNode::create(const Config& config, const Storage& storage) {
  if (Status s = config.validate(); !s.ok())
    return s;
  auto init = storage.initial_state();
  if (!init.ok())
    return init.status();
  const HardState& hs = init->hard_state;
  const SnapshotMeta& snap = init->snapshot;
  const Index last = storage.last_index();
  if (storage.first_index() > snap.index + 1 || last < snap.index) {
    return Status::corruption("the log does not reach the snapshot at index " +
                              std::to_string(snap.index));
  }
  if (config.applied < snap.index) {
    return Status::invalid_argument("the state machine has applied up to " +
                                    std::to_string(config.applied) + ", behind the snapshot at " +
                                    std::to_string(snap.index) +
                                    ": restore the snapshot into it first");
  }
  if (config.applied > last) {
    return Status::corruption("the state machine has applied up to " +
                              std::to_string(config.applied) + ", past the last log entry " +
                              std::to_string(last));
  }
  // A durable state machine may be ahead of the persisted commit index (the runtime stores them
  // separately): what it applied was committed.
  const Index committed = std::max({hs.commit, config.applied, snap.index});
  if (committed > last) {
    return Status::corruption("commit index " + std::to_string(committed) +
                              " is past the last log entry " + std::to_string(last));
  }
  // Membership as of `applied`: the snapshot's, then every change applied after it.
  ConfState conf = snap.conf;
  if (config.applied > snap.index) {
    auto entries = storage.entries(snap.index + 1, config.applied + 1, UINT64_MAX);
    if (!entries.ok())
      return entries.status();
    for (const Entry& e : *entries) {
      if (e.type != EntryType::kConfChange)
        continue;
      auto cc = decode_conf_change(e.data.view());
      if (!cc.ok())
        continue;  // skipped when it was applied too (Raft::on_applied)
      auto next = apply_conf_change(conf, *cc);
      if (next.ok())
        conf = std::move(next).value();
    }
  }
  return std::unique_ptr<RawNode>(
      new RawNode(config, storage, hs, std::move(conf), committed, config.applied));
}

RawNode::RawNode(const Config& config, const Storage& storage, const HardState& hs, ConfState conf,
                 Index committed, Index applied)
    : raft_(config, storage, hs, std::move(conf), committed, applied),
      max_apply_bytes_(config.max_apply_bytes),
      prev_soft_{raft_.leader(), raft_.role()},
      prev_hard_(hs) {}

Status RawNode::step(Message m) {
  if (m.to != raft_.id()) {
    return Status::invalid_argument("message for node " + std::to_string(m.to) +
                                    " delivered to node " + std::to_string(raft_.id()));
  }
  if (m.from == kNoNode)
    return Status::invalid_argument("message from node 0");
  if (Violation v = raft_.step(std::move(m)); v != Violation::kNone)
    return Status::protocol_violation(violation_name(v));
  return Status();
}

bool RawNode::has_ready() const {
  if (handed_)
    return false;
  const RaftLog& log = raft_.log();
  return raft_.has_queued_output() || !log.unstable_entries().empty() ||
         log.unstable_snapshot().has_value() || log.has_next_committed_entries() ||
         raft_.hard_state() != prev_hard_ || SoftState{raft_.leader(), raft_.role()} != prev_soft_;
}

Ready RawNode::ready() {
  RAFTNGINX_CHECK(!handed_, "ready() called again before advance()");
  raft_.flush();
  RaftLog& log = raft_.log();
  Ready rd;
  Handed handed;

  const SoftState soft{raft_.leader(), raft_.role()};
  if (soft != prev_soft_) {
    rd.soft_state = soft;
    prev_soft_ = soft;
  }
  const HardState hard = raft_.hard_state();
  if (hard != prev_hard_)
    rd.hard_state = hard;
  handed.hard_state = hard;

  if (log.unstable_snapshot()) {
    rd.snapshot = *log.unstable_snapshot();
    handed.snapshot = rd.snapshot;
  }
  rd.entries = log.unstable_entries();
  if (!rd.entries.empty())
    handed.last_entry = {rd.entries.back().index, rd.entries.back().term};
  rd.committed_entries = log.next_committed_entries(max_apply_bytes_);
  handed.committed = rd.committed_entries;
  rd.messages = raft_.take_messages();
  rd.read_states = raft_.take_read_states();
  rd.must_sync = !rd.entries.empty() || rd.snapshot.has_value() || hard.term != prev_hard_.term ||
                 hard.vote != prev_hard_.vote;
  handed_ = std::move(handed);
  return rd;
}

void RawNode::advance() {
  RAFTNGINX_CHECK(handed_.has_value(), "advance() without a Ready");
  Handed handed = std::move(*handed_);
  handed_.reset();
  prev_hard_ = handed.hard_state;
  if (handed.snapshot)
    raft_.on_snapshot_installed(*handed.snapshot);
  if (handed.last_entry)
    raft_.on_entries_stable(handed.last_entry->first, handed.last_entry->second);
  raft_.on_applied(handed.committed);
}

NodeStatus RawNode::status() const {
  NodeStatus st;
  st.id = raft_.id();
  st.role = raft_.role();
  st.learner = raft_.conf().learners.count(raft_.id()) > 0;
  st.leader = raft_.leader();
  st.hard_state = raft_.hard_state();
  st.applied = raft_.log().applied();
  st.first_index = raft_.log().first_index();
  st.last_index = raft_.log().last_index();
  st.conf = raft_.conf();
  st.lead_transferee = raft_.lead_transferee();
  for (const auto& [id, pr] : raft_.progress()) {
    st.peers.push_back(PeerStatus{id, raft_.conf().voters.count(id) > 0, pr.match_index,
                                  pr.next_index, pr.state, pr.recent_active});
  }
  return st;
}

bool may_send_before_durable(const Ready& rd, const Message& m, const HardState& stored) {
  const bool same_term_and_vote =
      !rd.hard_state || (rd.hard_state->term == stored.term && rd.hard_state->vote == stored.vote);
  return same_term_and_vote &&
         (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat);
}

}  // namespace raftnginx::raft
