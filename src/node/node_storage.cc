// Start-up: the node's storage opened and the state machine, membership and sessions brought to
// the same point of the log.
#include <spdlog/spdlog.h>

#include "node/backend_call.h"
#include "node/envelope.h"
#include "node/node.h"
#include "util/checksum.h"
#include "util/coding.h"

namespace raftnginx::node {

Status Node::open_storage() {
  storage::Env* env = options_.env;
  const std::string& dir = options_.data_dir;
  if (Status s = env->create_dirs(dir); !s.ok())
    return s;
  auto snapshots = storage::SnapshotStore::open(env, dir + "/snapshots", options_.retain_snapshots);
  if (!snapshots.ok())
    return snapshots.status();
  snapshots_ = std::move(snapshots).value();
  const std::optional<storage::SnapshotInfo> latest = snapshots_->latest();
  const raft::SnapshotMeta snap = latest ? latest->meta : raft::SnapshotMeta{};
  storage::LogStoreOptions log_options;
  log_options.segment_bytes = options_.segment_bytes;
  const std::string log_dir = options_.log_dir.empty() ? dir + "/log" : options_.log_dir;
  storage::LogRecovery recovery;
  auto log = storage::LogStore::open(env, log_dir, snap, log_options, &recovery);
  if (!log.ok())
    return log.status();
  log_ = std::move(log).value();
  if (!recovery.torn_segment.empty()) {
    spdlog::warn(
        "log: cut a torn write at start-up: {} from offset {} ({}; {} bytes, {} whole records "
        "after it, none of them acknowledged)",
        recovery.torn_segment, recovery.torn_offset, recovery.torn_reason, recovery.torn_bytes,
        recovery.dropped_records);
  }
  status_.log_recovery = std::move(recovery);
  if (log_->empty() && !latest && options_.bootstrap) {
    raft::BootstrapState boot =
        raft::bootstrap_state(options_.bootstrap->conf, options_.bootstrap->contexts());
    if (Status s = log_->save(boot.entries, boot.hard_state, true); !s.ok())
      return s;
  }

  // Bring the state machine up to the snapshot if it is behind; never hand it anything twice.
  raft::Index applied = fsm_->applied_index();
  if (latest) {
    if (Status s = check_backend(*latest); !s.ok())
      return s;
    if (applied < snap.index) {
      if (Status s = snapshots_->verify(*latest); !s.ok())
        return s;
      if (Status s = backend_call(
              "restore", [&] { return fsm_->restore(env, latest->dir, snap.index, snap.term); });
          !s.ok())
        return s;
      applied = snap.index;
    }
    if (Status s = load_node_file(latest->dir); !s.ok())
      return s;
  }
  if (applied > log_->last_index()) {
    return Status::corruption("the state machine applied up to " + std::to_string(applied) +
                              " but the log ends at " + std::to_string(log_->last_index()));
  }
  record_membership(snap.index, cluster::Membership::from(
                                    snap.conf, latest ? latest->member_contexts
                                                      : std::map<raft::NodeId, std::string>{}));
  if (Status s = replay_metadata(snap.index + 1, applied + 1); !s.ok())
    return s;

  raft::Config c;
  c.id = options_.id;
  c.election_tick = options_.election_ticks;
  c.heartbeat_tick = options_.heartbeat_ticks;
  c.applied = applied;
  c.random_seed =
      options_.id ^ static_cast<uint64_t>(options_.clock->now().time_since_epoch().count());
  auto core = raft::RawNode::create(c, *log_);
  if (!core.ok())
    return core.status();
  core_ = std::move(core).value();
  ReadySink* sink = this;
  pipeline_ = std::make_unique<ReadyPipeline>(core_.get(), sink, options_.clock, &sync_latency_);
  applied_ = applied;
  last_snapshot_index_ = snap.index;
  return Status();
}

// What the entries in [from, to) changed besides the state machine, which already holds their
// effects: the membership, and the session table (whose results for them are unknown now).
Status Node::replay_metadata(raft::Index from, raft::Index to) {
  if (from >= to)
    return Status();
  auto entries = log_->entries(from, to, UINT64_MAX);
  if (!entries.ok())
    return entries.status();
  for (const raft::Entry& e : *entries) {
    if (e.type == raft::EntryType::kConfChange) {
      apply_membership_change(e);
      continue;
    }
    if (e.data.empty())
      continue;
    auto envelope = decode_envelope(e.data.view());
    if (!envelope.ok())
      continue;  // answered with an error when it was applied; changed nothing
    const std::string id(envelope->request_id);
    if (!id.empty() && sessions_.find(id) != nullptr)
      continue;  // a retry: the table answered it
    session_time_ms_ = std::max(session_time_ms_, envelope->time_ms);
    sessions_.evict(e.index, session_time_ms_);
    if (!id.empty()) {
      sessions_.record(id, SessionTable::Record{e.index,
                                                envelope->time_ms,
                                                fnv1a64(fsm_->request_identity(envelope->command)),
                                                false,
                                                {}});
    }
  }
  return Status();
}

// The node's file in a snapshot: format version (1) | session time (8) | session table.
std::string Node::node_file() const {
  std::string out;
  put_u8(&out, 1);
  put_u64(&out, session_time_ms_);
  out += sessions_.serialize();
  return out;
}

Status Node::load_node_file(const std::string& snapshot_dir) {
  const std::string path = snapshot_dir + "/" + kNodeSnapshotFile;
  if (!options_.env->exists(path)) {
    sessions_.clear();
    session_time_ms_ = 0;
    return Status();
  }
  auto data = options_.env->read_file(path);
  if (!data.ok())
    return data.status();
  Reader r(*data);
  const uint8_t version = r.u8();
  const uint64_t time_ms = r.u64();
  if (!r.ok() || version != 1)
    return Status::corruption(path + ": not a node file of this version");
  auto table = SessionTable::parse(std::string_view(*data).substr(9), options_.sessions);
  if (!table.ok())
    return Status::corruption(path + ": " + table.status().message());
  sessions_ = std::move(table).value();
  session_time_ms_ = time_ms;
  return Status();
}

}  // namespace raftnginx::node
