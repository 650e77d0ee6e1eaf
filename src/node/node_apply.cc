// The node as the ReadyPipeline's sink: the log, the transport, and committed entries applied
// through the session table to the state machine.
#include <spdlog/spdlog.h>

#include "node/backend_call.h"
#include "node/envelope.h"
#include "node/node.h"
#include "storage/backup.h"
#include "util/checksum.h"
#include "util/printable.h"

namespace raftnginx::node {

Status Node::save(const std::vector<raft::Entry>& entries,
                  const std::optional<raft::HardState>& hard_state, bool sync) {
  return log_->save(entries, hard_state, sync);
}

void Node::send(std::vector<raft::Message> messages) {
  transport_->send(std::move(messages));
}

Status Node::install_snapshot(const raft::SnapshotMeta& meta) {
  // A local snapshot or a backup may still be reading the state machine restore() replaces.
  join_state_readers();
  std::optional<storage::SnapshotInfo> info;
  {
    std::lock_guard lock(store_mu_);
    for (const auto& s : snapshots_->snapshots()) {
      if (s.meta.index == meta.index && s.meta.term == meta.term)
        info = s;
    }
  }
  if (!info)
    return Status::corruption("snapshot " + std::to_string(meta.index) + " is not in the store");
  if (Status s = check_backend(*info); !s.ok())
    return s;
  if (Status s = backend_call(
          "restore", [&] { return fsm_->restore(options_.env, info->dir, meta.index, meta.term); });
      !s.ok())
    return s;
  if (Status s = load_node_file(info->dir); !s.ok())
    return s;
  if (Status s = log_->apply_snapshot(meta); !s.ok())
    return s;
  membership_history_.clear();
  record_membership(meta.index, cluster::Membership::from(meta.conf, info->member_contexts));
  transport_->update_peers(membership().raft_addresses());
  applied_ = meta.index;
  last_snapshot_index_ = meta.index;
  // Entries proposed here and covered by the snapshot: whether they committed is not known.
  while (!waiters_.empty() && waiters_.begin()->first <= meta.index) {
    waiters_.begin()->second.done(
        Status::outcome_unknown("the state was replaced by a snapshot from the leader"));
    waiters_.erase(waiters_.begin());
  }
  std::lock_guard lock(status_mu_);
  ++status_.snapshots_installed;
  return Status();
}

Status Node::replace_state(std::string_view data, const raft::Entry& e, Status* refused) {
  auto backup = storage::decode_backup(data);
  if (!backup.ok()) {
    *refused = Status::invalid_argument(backup.status().message());
    return Status();
  }
  // Its keys' revisions reach its index: at or past this entry, they would run backwards.
  if (backup->header.index >= e.index) {
    *refused = Status::invalid_argument(
        "the backup is of index " + std::to_string(backup->header.index) +
        ", not before this cluster's " + std::to_string(e.index) +
        ": its revisions would run backwards; restore it into a new cluster");
    return Status();
  }
  if (backup->header.fsm_name != fsm_->name()) {
    *refused =
        Status::invalid_argument("the backup holds the state of the \"" + backup->header.fsm_name +
                                 "\" backend, and the cluster runs \"" + fsm_->name() + "\"");
    return Status();
  }
  Result<std::string> dir = Status::io_error("no staging directory");
  {
    std::lock_guard lock(store_mu_);
    dir = snapshots_->begin();
  }
  if (!dir.ok())
    return dir.status();
  Status s = storage::write_backup_files(options_.env, *dir, *backup);
  if (s.ok()) {
    join_state_readers();  // what still reads the state machine that replace() changes
    s = backend_call("replace", [&] { return fsm_->replace(options_.env, *dir, e.index, e.term); });
  }
  {
    std::lock_guard lock(store_mu_);
    snapshots_->abort(*dir);
  }
  if (s.code() == Status::Code::kInvalidArgument || s.code() == Status::Code::kNotSupported) {
    *refused = s;
    return Status();
  }
  if (!s.ok())
    return s;
  spdlog::warn("the state was replaced at index {} by a backup of index {} taken by {} ({} files)",
               e.index, backup->header.index, printable(backup->header.taken_by, 64),
               backup->header.files.size());
  return Status();
}

void Node::record_checkpoint(raft::Index index) {
  const std::optional<uint64_t> hash = fsm_->state_hash();
  std::lock_guard lock(status_mu_);
  status_.checkpoint_index = index;
  status_.checkpoint_hash = hash;
  if (!hash)
    return;
  checkpoint_hashes_[index] = *hash;
  while (checkpoint_hashes_.size() > kKeptCheckpoints)
    checkpoint_hashes_.erase(checkpoint_hashes_.begin());
}

void Node::apply_membership_change(const raft::Entry& e) {
  auto cc = raft::decode_conf_change(e.data.view());
  if (!cc.ok())
    return;
  cluster::Membership next = membership();
  if (next.apply(*cc))  // the core skips a change it refuses the same way
    record_membership(e.index, std::move(next));
}

void Node::record_membership(raft::Index index, cluster::Membership m) {
  membership_history_[index] = std::move(m);
  ++membership_version_;
}

// Commands on their way to the state machine: the batch in hand, and every entry's outcome.
struct Node::Pending {
  std::vector<fsm::Command> batch;
  std::vector<std::string> batch_ids;  // the request id of each command in `batch`
  std::map<raft::Index, Outcome> outcomes;
};

Status Node::apply_commands(Pending& p) {
  if (p.batch.empty())
    return Status();
  std::vector<fsm::ApplyResult> results;
  results.reserve(p.batch.size());
  if (Status s = backend_call("apply", [&] { return fsm_->apply(p.batch, &results); }); !s.ok())
    return s;
  for (size_t i = 0; i < p.batch.size(); ++i) {
    const fsm::Command& cmd = p.batch[i];
    if (!p.batch_ids[i].empty()) {
      sessions_.record(
          p.batch_ids[i],
          SessionTable::Record{cmd.index, cmd.time_ms, fnv1a64(fsm_->request_identity(cmd.data)),
                               true, results[i]});
    }
    p.outcomes[cmd.index] = Outcome{cmd.index, std::move(results[i])};
  }
  {
    std::lock_guard lock(status_mu_);
    status_.entries_applied += p.batch.size();
  }
  p.batch.clear();
  p.batch_ids.clear();
  return Status();
}

Status Node::apply(std::span<const raft::Entry> committed) {
  if (committed.empty())
    return Status();
  Pending p;
  const cluster::Membership before = membership();
  // The session table is consulted and changed in log order, exactly as if every command were
  // applied alone: a command with a request id ends the batch, so that its record is in the
  // table before any later command is looked up (session_table.h: the same on every node).
  for (const raft::Entry& e : committed) {
    if (e.type == raft::EntryType::kConfChange) {
      apply_membership_change(e);
      p.outcomes[e.index] = Outcome{e.index, {}};
      continue;
    }
    if (e.data.empty())
      continue;  // a new leader's no-op
    if (is_checkpoint(e.data.view())) {
      if (Status s = apply_commands(p); !s.ok())  // the hash is of the state before it
        return s;
      record_checkpoint(e.index);
      p.outcomes[e.index] = Outcome{e.index, {}};
      continue;
    }
    if (const auto backup = replacement_of(e.data.view())) {
      if (Status s = apply_commands(p); !s.ok())
        return s;
      Status refused;
      if (Status s = replace_state(*backup, e, &refused); !s.ok())
        return s;
      p.outcomes[e.index] = Outcome{e.index, fsm::ApplyResult{refused, {}}};
      continue;
    }
    auto envelope = decode_envelope(e.data.view());
    if (!envelope.ok()) {
      p.outcomes[e.index] = Outcome{e.index, fsm::ApplyResult{envelope.status(), {}}};
      continue;
    }
    const std::string id(envelope->request_id);
    if (const SessionTable::Record* rec = id.empty() ? nullptr : sessions_.find(id)) {
      if (rec->command_hash != fnv1a64(fsm_->request_identity(envelope->command))) {
        p.outcomes[e.index] = Outcome{
            e.index, fsm::ApplyResult{Status::conflict("request id '" + id +
                                                       "' was used before for another request"),
                                      {}}};
      } else {
        p.outcomes[e.index] = Outcome{rec->index, rec->result, true, rec->result_known};
      }
      continue;
    }
    session_time_ms_ = std::max(session_time_ms_, envelope->time_ms);
    sessions_.evict(e.index, session_time_ms_);
    p.batch.push_back(fsm::Command{e.index, e.term, envelope->time_ms, envelope->command});
    p.batch_ids.push_back(id);
    if (!id.empty()) {
      if (Status s = apply_commands(p); !s.ok())
        return s;
    }
  }
  if (Status s = apply_commands(p); !s.ok())
    return s;
  applied_ = committed.back().index;
  if (membership() != before)
    transport_->update_peers(membership().raft_addresses());
  // A client told that its write was applied must find it in status() (X-Raft-Index, /join).
  publish_status();
  answer_waiters(committed, p.outcomes);
  return Status();
}

void Node::answer_waiters(std::span<const raft::Entry> entries,
                          std::map<raft::Index, Outcome>& outcomes) {
  // A waiter whose entry was replaced by another leader's learns that its write did not commit.
  size_t pos = 0;
  while (!waiters_.empty() && waiters_.begin()->first <= applied_) {
    auto node = waiters_.extract(waiters_.begin());
    const raft::Index index = node.key();
    while (pos < entries.size() && entries[pos].index < index)
      ++pos;
    const bool ours = pos < entries.size() && entries[pos].index == index &&
                      entries[pos].term == node.mapped().term;
    if (!ours) {
      node.mapped().done(Status::busy("the write did not commit: leadership changed; retry"));
      continue;
    }
    auto out = outcomes.find(index);
    if (out == outcomes.end()) {
      node.mapped().done(Outcome{index, {}});
    } else {
      node.mapped().done(std::move(out->second));
    }
  }
}

void Node::read_states(std::vector<raft::ReadState> states) {
  for (raft::ReadState& rs : states) {
    auto it = reads_waiting_index_.find(rs.context);
    if (it == reads_waiting_index_.end())
      continue;
    for (StatusCallback& done : it->second.reads)
      reads_waiting_apply_.emplace(rs.index, std::move(done));
    reads_waiting_index_.erase(it);
  }
}

}  // namespace raftnginx::node
