// Snapshots: taken beside the raft loop, streamed to followers, received from the leader.
#include <spdlog/spdlog.h>

#include "node/backend_call.h"
#include "node/node.h"

namespace raftnginx::node {

void Node::maybe_snapshot() {
  if (snapshot_in_progress_ || applied_ <= last_snapshot_index_)
    return;
  const auto now = options_.clock->now();
  const bool enough_entries = applied_ >= last_snapshot_index_ + options_.snapshot_threshold;
  const bool interval_passed = options_.snapshot_interval.count() > 0 &&
                               now - last_snapshot_time_ >= options_.snapshot_interval;
  if (!enough_entries && !interval_passed)
    return;
  Result<std::unique_ptr<fsm::Snapshot>> snap = Status::io_error("no snapshot");
  if (Status s = take_view(&snap); !s.ok())
    return fail(s);
  if (!snap.ok() || (*snap)->index() <= last_snapshot_index_) {
    // Only entries without commands since the last snapshot: nothing new to capture.
    last_snapshot_time_ = now;
    return;
  }
  storage::SnapshotInfo info;
  info.meta.index = (*snap)->index();
  info.meta.term = (*snap)->term();
  // The membership in force at the snapshot's index (the history always reaches back that far).
  const cluster::Membership& at =
      std::prev(membership_history_.upper_bound(info.meta.index))->second;
  info.meta.conf = at.conf;
  info.member_contexts = at.contexts();
  info.fsm_name = fsm_->name();
  snapshot_in_progress_ = true;
  last_snapshot_time_ = now;
  if (snapshot_thread_.joinable())
    snapshot_thread_.join();
  // The session table changes only where a command reaches the state machine, so the table now
  // is the table at the state machine's snapshot index (session_table.h).
  snapshot_thread_ = std::thread(&Node::write_snapshot, this, std::move(snap).value(),
                                 std::move(info), node_file());
}

Status Node::take_view(Result<std::unique_ptr<fsm::Snapshot>>* view) {
  return backend_call("snapshot", [&] {
    *view = fsm_->snapshot();
    return Status();
  });
}

// On the snapshot thread: the files, beside the raft loop, which goes on applying.
void Node::write_snapshot(std::unique_ptr<fsm::Snapshot> snap, storage::SnapshotInfo info,
                          std::string node_file) {
  Result<std::string> tmp = Status::io_error("no staging directory");
  {
    std::lock_guard lock(store_mu_);
    tmp = snapshots_->begin();
  }
  Result<storage::SnapshotInfo> sealed = Status::io_error("snapshot not written");
  if (!tmp.ok()) {
    sealed = tmp.status();
  } else {
    Status written =
        backend_call("snapshot writer", [&] { return snap->write_to(options_.env, *tmp); });
    if (written.ok())
      written = options_.env->write_file_atomically(*tmp + "/" + kNodeSnapshotFile, node_file);
    std::lock_guard lock(store_mu_);
    if (written.ok()) {
      sealed = snapshots_->commit(*tmp, std::move(info));
    } else {
      snapshots_->abort(*tmp);
      sealed = written;
    }
  }
  post([this, sealed = std::move(sealed)]() mutable { snapshot_written(std::move(sealed)); });
}

void Node::snapshot_written(Result<storage::SnapshotInfo> sealed) {
  snapshot_in_progress_ = false;
  // Failed, or overtaken by a snapshot installed from the leader meanwhile.
  if (!sealed.ok() || sealed->meta.index <= last_snapshot_index_)
    return;
  const raft::SnapshotMeta& meta = sealed->meta;
  if (Status s = log_->compact(meta, options_.trailing_logs); !s.ok())
    return fail(s);
  last_snapshot_index_ = meta.index;
  // Keep the membership in force at the snapshot and every change after it.
  membership_history_.erase(membership_history_.begin(),
                            std::prev(membership_history_.upper_bound(meta.index)));
  std::lock_guard lock(status_mu_);
  ++status_.snapshots_taken;
}

void Node::send_snapshot(raft::Message m) {
  const raft::NodeId to = m.to;
  std::optional<storage::SnapshotInfo> info;
  std::optional<raft::Index> released;
  {
    std::lock_guard lock(store_mu_);
    // The core asks for its newest snapshot; a peer whose stream broke off gets the one it was
    // receiving instead, while that is kept and the log still holds every entry after it, so
    // that it resumes rather than starts over: the core then probes it and sends those entries.
    raft::Index wanted = m.snapshot.index;
    if (auto it = broken_streams_.find(to); it != broken_streams_.end()) {
      if (options_.clock->now() < it->second.until && it->second.index < wanted &&
          it->second.index + 1 >= log_->first_index())
        wanted = it->second.index;
      released = it->second.index;
      broken_streams_.erase(it);
    }
    for (const auto& s : snapshots_->snapshots()) {
      if (s.meta.index == wanted)
        info = s;
    }
    if (info)
      snapshots_->pin(info->meta.index);  // not pruned while it streams
  }
  if (released)
    unpin_snapshot(*released);
  if (!info) {
    core_->report_snapshot(to, false);
    return;
  }
  m.snapshot = info->meta;
  const raft::Index index = info->meta.index;
  transport_->send_snapshot(
      std::move(m), std::move(*info), [mailbox = mailbox_, this, to, index](bool delivered) {
        post_to(mailbox, [this, to, index, delivered] {
          if (delivered) {
            unpin_snapshot(index);
          } else {
            // Still pinned, for the next attempt, as long as the peer keeps its part (a stream
            // from an earlier term may have broken meanwhile: its pin goes).
            if (auto it = broken_streams_.find(to); it != broken_streams_.end())
              unpin_snapshot(it->second.index);
            broken_streams_[to] = {index,
                                   options_.clock->now() + defaults::kKeepBrokenSnapshotStream};
          }
          core_->report_snapshot(to, delivered);
        });
      });
}

void Node::expire_broken_streams() {
  const auto now = options_.clock->now();
  for (auto it = broken_streams_.begin(); it != broken_streams_.end();) {
    if (now < it->second.until) {
      ++it;
      continue;
    }
    unpin_snapshot(it->second.index);
    it = broken_streams_.erase(it);
  }
}

void Node::unpin_snapshot(raft::Index index) {
  Status s;
  {
    std::lock_guard lock(store_mu_);
    s = snapshots_->unpin(index);
  }
  if (!s.ok())
    fail(s);
}

Result<std::string> Node::begin_snapshot_receive(transport::Sender sender) {
  // Only this node's leader offers a snapshot. A node that knows no leader yet takes one: a
  // node that just joined hears first from its leader by the snapshot that makes it a member
  // (refused, it could never answer the leader's heartbeats, knowing nobody's address, and a
  // two-voter cluster would stall); the core checks the message's term when it is stepped.
  const raft::NodeId leader = published_leader_.load();
  if (leader != raft::kNoNode && sender.id != leader)
    return Status::unavailable("a snapshot stream from a node that is not the leader");
  std::lock_guard lock(store_mu_);
  return snapshots_->begin();
}

void Node::abort_snapshot_receive(const std::string& staged_dir) {
  std::lock_guard lock(store_mu_);
  snapshots_->abort(staged_dir);
}

Status Node::finish_snapshot_receive(raft::Message m, transport::Sender sender,
                                     const std::string& staged_dir, storage::SnapshotInfo info) {
  if (m.type != raft::MessageType::kSnapshot || m.snapshot != info.meta)
    return Status::invalid_argument("a snapshot stream whose message does not describe it");
  // Checksumming and fsyncing a large snapshot takes a while: not on the transport's thread,
  // which carries every other message too. One snapshot is verified at a time.
  std::lock_guard lock(receive_mu_);
  if (receive_thread_.joinable())
    receive_thread_.join();
  receive_thread_ =
      std::thread([this, m = std::move(m), sender, staged_dir, info = std::move(info)]() mutable {
        seal_received_snapshot(std::move(m), sender, staged_dir, std::move(info));
      });
  return Status();
}

void Node::seal_received_snapshot(raft::Message m, transport::Sender sender,
                                  const std::string& staged_dir, storage::SnapshotInfo info) {
  const std::vector<storage::SnapshotFile> expected = info.files;
  const raft::Index index = info.meta.index;
  {
    std::lock_guard lock(store_mu_);
    // A damaged transfer is dropped here; the leader, hearing nothing, sends it again.
    auto sealed = snapshots_->commit(staged_dir, std::move(info), &expected);
    if (!sealed.ok()) {
      spdlog::warn(
          "snapshot {} from node {} failed its check and was dropped ({}); the leader "
          "sends it again",
          index, status().membership.name_of(sender.id), sealed.status().message());
      snapshots_->abort(staged_dir);
      return;
    }
    snapshots_->pin(index);  // kept until the core has taken it or turned it down
  }
  // The Ready that installs it, if the core accepts it, is handled in this same task.
  const bool queued = post([this, m = std::move(m), sender, index]() mutable {
    step_from_network(std::move(m), sender, true);
    while (failure_.ok() && core_->has_ready())
      handle_ready();
    unpin_snapshot(index);
  });
  if (!queued) {
    std::lock_guard lock(store_mu_);
    (void)snapshots_->unpin(index);
  }
}

Status Node::check_backend(const storage::SnapshotInfo& info) const {
  if (info.fsm_name == fsm_->name())
    return Status();
  return Status::invalid_argument("snapshot " + std::to_string(info.meta.index) +
                                  " holds the state of the \"" + info.fsm_name +
                                  "\" backend, and this node runs \"" + fsm_->name() +
                                  "\": every node of a cluster runs the same backend");
}

}  // namespace raftnginx::node
