#include "node/node.h"

#include <future>

#include "util/coding.h"

namespace raftnginx::node {
namespace {

constexpr uint8_t kEnvelopeVersion = 1;

struct Envelope {
  std::string_view request_id;
  std::string_view command;
};

Result<Envelope> decode_envelope(std::string_view data) {
  Reader r(data);
  if (r.u8() != kEnvelopeVersion)
    return Status::not_supported("command envelope: unknown version");
  Envelope e;
  e.request_id = r.bytes();
  if (!r.ok())
    return Status::corruption("command envelope: malformed");
  e.command = data.substr(5 + e.request_id.size());
  return e;
}

}  // namespace

std::string encode_envelope(std::string_view request_id, std::string_view command) {
  std::string out;
  out.reserve(5 + request_id.size() + command.size());
  put_u8(&out, kEnvelopeVersion);
  put_bytes(&out, request_id);
  out.append(command);
  return out;
}

Node::Node(NodeOptions options, std::unique_ptr<fsm::StateMachine> fsm,
           transport::Transport* transport)
    : options_(std::move(options)), fsm_(std::move(fsm)), transport_(transport) {}

Node::~Node() {
  stop();
}

Result<std::unique_ptr<Node>> Node::start(NodeOptions options,
                                          std::unique_ptr<fsm::StateMachine> fsm,
                                          transport::Transport* transport) {
  std::unique_ptr<Node> node(new Node(std::move(options), std::move(fsm), transport));
  if (Status s = node->open_storage(); !s.ok())
    return s;
  transport->set_receiver(node->id(), node.get());
  transport->update_peers(node->contexts_);
  node->publish_status();
  node->loop_ = std::thread([n = node.get()] { n->run(); });
  return node;
}

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
  auto log = storage::LogStore::open(env, log_dir, snap, log_options);
  if (!log.ok())
    return log.status();
  log_ = std::move(log).value();
  if (log_->empty() && !latest && options_.bootstrap) {
    raft::BootstrapState boot =
        raft::bootstrap_state(*options_.bootstrap, options_.bootstrap_contexts);
    if (Status s = log_->save(boot.entries, boot.hard_state, true); !s.ok())
      return s;
  }

  // Bring the state machine up to the snapshot if it is behind; never hand it anything twice.
  raft::Index applied = fsm_->applied_index();
  if (latest && applied < snap.index) {
    if (Status s = snapshots_->verify(*latest); !s.ok())
      return s;
    if (Status s = fsm_->restore(env, latest->dir, snap.index, snap.term); !s.ok())
      return s;
    applied = snap.index;
  }
  if (applied > log_->last_index()) {
    return Status::corruption("the state machine applied up to " + std::to_string(applied) +
                              " but the log ends at " + std::to_string(log_->last_index()));
  }

  // Membership and member contexts as of `applied`: the snapshot's, then later changes.
  conf_ = snap.conf;
  if (latest)
    contexts_ = latest->member_contexts;
  if (applied > snap.index) {
    auto entries = log_->entries(snap.index + 1, applied + 1, UINT64_MAX);
    if (!entries.ok())
      return entries.status();
    for (const raft::Entry& e : *entries) {
      if (e.type == raft::EntryType::kConfChange)
        apply_conf_change(e);
    }
  }

  raft::Config c;
  c.id = options_.id;
  c.election_tick = options_.election_ticks;
  c.heartbeat_tick = options_.heartbeat_ticks;
  c.applied = applied;
  c.random_seed = options_.id ^ static_cast<uint64_t>(
                                    std::chrono::steady_clock::now().time_since_epoch().count());
  auto core = raft::RawNode::create(c, *log_);
  if (!core.ok())
    return core.status();
  core_ = std::move(core).value();
  applied_ = applied;
  last_snapshot_index_ = snap.index;
  conf_history_[applied_] = {conf_, contexts_};
  return Status();
}

bool Node::post_to(const std::shared_ptr<Mailbox>& mailbox, std::function<void()> task) {
  {
    std::lock_guard lock(mailbox->mu);
    if (mailbox->closed)
      return false;
    mailbox->tasks.push_back(std::move(task));
  }
  mailbox->cv.notify_one();
  return true;
}

void Node::run() {
  auto next_tick = std::chrono::steady_clock::now() + options_.tick;
  for (;;) {
    std::deque<std::function<void()>> batch;
    {
      std::unique_lock lock(mailbox_->mu);
      mailbox_->cv.wait_until(lock, next_tick,
                              [this] { return mailbox_->closed || !mailbox_->tasks.empty(); });
      if (mailbox_->closed)
        return;
      batch.swap(mailbox_->tasks);
    }
    for (auto& task : batch)
      task();
    issue_reads();
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_tick) {
      core_->tick();
      ++ticks_;
      expire_reads();
      if (failure_.ok())
        maybe_snapshot();  // the time trigger, also on an idle node
      next_tick += options_.tick;
      // After a stall, do not tick in a burst: that would fake an election timeout.
      if (next_tick < now)
        next_tick = now + options_.tick;
    }
    while (failure_.ok() && core_->has_ready())
      handle_ready();
    publish_status();
  }
}

void Node::handle_ready() {
  raft::Ready rd = core_->ready();
  if (rd.snapshot) {
    if (Status s = install_snapshot(*rd.snapshot); !s.ok())
      return fail(s);
  }
  // Replication overlaps the leader's own fsync where the core allows it (raw_node.h, step 2).
  std::vector<raft::Message> early;
  std::vector<raft::Message> after_save;
  for (raft::Message& m : rd.messages) {
    if (m.type == raft::MessageType::kSnapshot) {
      send_snapshot(std::move(m));
    } else if (raft::may_send_before_durable(rd, m, log_->hard_state())) {
      early.push_back(std::move(m));
    } else {
      after_save.push_back(std::move(m));
    }
  }
  if (!early.empty())
    transport_->send(std::move(early));
  // The leader's clients need not wait for this Ready's fsync: committed entries already on
  // this node's disk are applied and answered before it. The state machine still never gets
  // ahead of the durable log (open_storage() relies on that). A follower acknowledges first.
  const std::span<const raft::Entry> committed(rd.committed_entries);
  size_t applied_early = 0;
  if (rd.must_sync && core_->role() == raft::Role::kLeader) {
    raft::Index durable = log_->last_index();  // every earlier save was synced
    if (!rd.entries.empty())
      durable = std::min(durable, rd.entries.front().index - 1);
    while (applied_early < committed.size() && committed[applied_early].index <= durable)
      ++applied_early;
    if (Status s = apply_entries(committed.first(applied_early)); !s.ok())
      return fail(s);
  }
  const auto save_start = std::chrono::steady_clock::now();
  if (Status s = log_->save(rd.entries, rd.hard_state, rd.must_sync); !s.ok())
    return fail(s);
  if (rd.must_sync)
    sync_latency_.record(std::chrono::steady_clock::now() - save_start);
  if (!after_save.empty())
    transport_->send(std::move(after_save));
  if (Status s = apply_entries(committed.subspan(applied_early)); !s.ok())
    return fail(s);
  for (raft::ReadState& rs : rd.read_states) {
    auto it = reads_waiting_index_.find(rs.context);
    if (it == reads_waiting_index_.end())
      continue;
    for (StatusCallback& done : it->second.reads)
      reads_waiting_apply_.emplace(rs.index, std::move(done));
    reads_waiting_index_.erase(it);
  }
  core_->advance();
  if (rd.soft_state) {
    // A ReadIndex request sent to a leader that is gone is never answered: let clients retry.
    for (auto& [ctx, batch] : std::exchange(reads_waiting_index_, {}))
      fail_reads(batch, Status::not_leader("leadership changed during the read; retry"));
  }
  serve_reads();
  maybe_snapshot();
}

void Node::send_snapshot(raft::Message m) {
  const raft::NodeId to = m.to;
  std::optional<storage::SnapshotInfo> info;
  {
    std::lock_guard lock(store_mu_);
    for (const auto& s : snapshots_->snapshots()) {
      if (s.meta.index == m.snapshot.index)
        info = s;
    }
  }
  if (!info) {
    core_->report_snapshot(to, false);
    return;
  }
  const raft::Index index = info->meta.index;
  {
    std::lock_guard lock(store_mu_);
    snapshots_->pin(index);  // not pruned while it streams
  }
  transport_->send_snapshot(std::move(m), std::move(*info),
                            [mailbox = mailbox_, this, to, index](bool delivered) {
                              post_to(mailbox, [this, to, index, delivered] {
                                unpin_snapshot(index);
                                core_->report_snapshot(to, delivered);
                              });
                            });
}

Status Node::install_snapshot(const raft::SnapshotMeta& meta) {
  // A local snapshot may still be reading the state machine that restore() replaces.
  if (snapshot_thread_.joinable())
    snapshot_thread_.join();
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
  if (Status s = fsm_->restore(options_.env, info->dir, meta.index, meta.term); !s.ok())
    return s;
  if (Status s = log_->apply_snapshot(meta); !s.ok())
    return s;
  conf_ = meta.conf;
  contexts_ = info->member_contexts;
  transport_->update_peers(contexts_);
  applied_ = meta.index;
  last_snapshot_index_ = meta.index;
  conf_history_.clear();
  conf_history_[applied_] = {conf_, contexts_};
  // Entries proposed here and covered by the snapshot: whether they committed is not known.
  while (!waiters_.empty() && waiters_.begin()->first <= meta.index) {
    waiters_.begin()->second.done(
        Status::busy("the outcome is unknown: the state was replaced by a snapshot"));
    waiters_.erase(waiters_.begin());
  }
  std::lock_guard lock(status_mu_);
  ++status_.snapshots_installed;
  return Status();
}

void Node::apply_conf_change(const raft::Entry& e) {
  auto cc = raft::decode_conf_change(e.data.view());
  if (!cc.ok())
    return;
  auto next = raft::apply_conf_change(conf_, *cc);
  if (!next.ok())
    return;  // the core skips it the same way
  conf_ = std::move(next).value();
  if (cc->type == raft::ConfChangeType::kRemoveNode) {
    contexts_.erase(cc->node);
  } else if (!cc->context.empty()) {
    contexts_[cc->node] = cc->context;
  }
  conf_history_[e.index] = {conf_, contexts_};
}

Status Node::apply_entries(std::span<const raft::Entry> entries) {
  if (entries.empty())
    return Status();
  std::vector<fsm::Command> commands;
  std::vector<fsm::ApplyResult> results;
  std::map<raft::Index, Result<fsm::ApplyResult>> outcomes;
  bool membership_changed = false;
  for (const raft::Entry& e : entries) {
    if (e.type == raft::EntryType::kConfChange) {
      apply_conf_change(e);
      membership_changed = true;
      outcomes.emplace(e.index, fsm::ApplyResult{});
    } else if (!e.data.empty()) {
      auto env = decode_envelope(e.data.view());
      if (env.ok()) {
        commands.push_back(fsm::Command{e.index, e.term, env->request_id, env->command});
      } else {
        outcomes.emplace(e.index, env.status());
      }
    }
  }
  if (!commands.empty()) {
    results.reserve(commands.size());
    if (Status s = fsm_->apply(commands, &results); !s.ok())
      return s;
    for (size_t i = 0; i < commands.size(); ++i)
      outcomes.emplace(commands[i].index, std::move(results[i]));
    std::lock_guard lock(status_mu_);
    status_.entries_applied += commands.size();
  }
  if (membership_changed)
    transport_->update_peers(contexts_);
  applied_ = entries.back().index;
  // A client told that its write was applied must find it in status() (X-Raft-Index, /join).
  publish_status();
  // Answer the clients whose entries these were; a waiter whose entry was replaced by another
  // leader's learns that its write did not commit.
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
      node.mapped().done(fsm::ApplyResult{});
    } else {
      node.mapped().done(std::move(out->second));
    }
  }
  return Status();
}

void Node::expire_reads() {
  // A ReadIndex request or its answer can be lost on the way (the core never answers twice):
  // after two election timeouts the client is told to retry.
  const uint64_t limit = 2 * static_cast<uint64_t>(options_.election_ticks);
  const Status why = Status::unavailable("no answer from the leader for the read; retry");
  for (auto it = reads_waiting_index_.begin(); it != reads_waiting_index_.end();) {
    if (ticks_ - it->second.issued_tick < limit) {
      ++it;
      continue;
    }
    fail_reads(it->second, why);
    it = reads_waiting_index_.erase(it);
  }
  if (ticks_ - reads_to_issue_.issued_tick >= limit)
    fail_reads(reads_to_issue_, why);
}

void Node::fail_reads(ReadBatch& batch, const Status& why) {
  for (StatusCallback& done : std::exchange(batch.reads, {}))
    done(why);
}

void Node::issue_reads() {
  if (reads_to_issue_.reads.empty() || !reads_waiting_index_.empty() || !failure_.ok())
    return;
  std::string ctx = std::to_string(++next_read_id_);
  if (Status s = core_->read_index(ctx); !s.ok())
    return fail_reads(reads_to_issue_, s);
  ReadBatch batch = std::exchange(reads_to_issue_, {});
  batch.issued_tick = ticks_;
  reads_waiting_index_.emplace(std::move(ctx), std::move(batch));
}

void Node::serve_reads() {
  while (!reads_waiting_apply_.empty() && reads_waiting_apply_.begin()->first <= applied_) {
    auto done = std::move(reads_waiting_apply_.begin()->second);
    reads_waiting_apply_.erase(reads_waiting_apply_.begin());
    done(Status());
  }
}

void Node::maybe_snapshot() {
  if (snapshot_in_progress_ || applied_ <= last_snapshot_index_)
    return;
  const bool enough_entries = applied_ >= last_snapshot_index_ + options_.snapshot_threshold;
  const bool interval_passed =
      options_.snapshot_interval.count() > 0 &&
      std::chrono::steady_clock::now() - last_snapshot_time_ >= options_.snapshot_interval;
  if (!enough_entries && !interval_passed)
    return;
  auto snap = fsm_->snapshot();
  if (!snap.ok() || (*snap)->index() <= last_snapshot_index_) {
    // Only entries without commands since the last snapshot: nothing new to capture.
    last_snapshot_time_ = std::chrono::steady_clock::now();
    return;
  }
  storage::SnapshotInfo info;
  info.meta.index = (*snap)->index();
  info.meta.term = (*snap)->term();
  auto at = conf_history_.upper_bound(info.meta.index);
  --at;  // conf_history_ always holds an entry at or below the last snapshot
  info.meta.conf = at->second.first;
  info.member_contexts = at->second.second;
  info.fsm_name = fsm_->name();
  snapshot_in_progress_ = true;
  last_snapshot_time_ = std::chrono::steady_clock::now();
  if (snapshot_thread_.joinable())
    snapshot_thread_.join();
  // Writing the files happens beside the raft loop, which goes on applying.
  snapshot_thread_ = std::thread(
      [this, mailbox = mailbox_, snap = std::move(snap).value(), info = std::move(info)]() mutable {
        Result<storage::SnapshotInfo> sealed = Status::io_error("snapshot not written");
        Result<std::string> tmp = Status::io_error("no staging directory");
        {
          std::lock_guard lock(store_mu_);
          tmp = snapshots_->begin();
        }
        if (tmp.ok()) {
          Status written = snap->write_to(options_.env, *tmp);
          std::lock_guard lock(store_mu_);
          if (written.ok()) {
            sealed = snapshots_->commit(*tmp, info);
          } else {
            snapshots_->abort(*tmp);
            sealed = written;
          }
        }
        post_to(mailbox, [this, sealed = std::move(sealed)] {
          snapshot_in_progress_ = false;
          // Failed, or overtaken by a snapshot installed from the leader meanwhile.
          if (!sealed.ok() || sealed->meta.index <= last_snapshot_index_)
            return;
          const raft::SnapshotMeta& meta = sealed->meta;
          if (Status s = log_->compact(meta, options_.trailing_logs); !s.ok())
            return fail(s);
          last_snapshot_index_ = meta.index;
          // Keep the membership in force at the snapshot and every change after it.
          auto keep = conf_history_.upper_bound(meta.index);
          conf_history_.erase(conf_history_.begin(), std::prev(keep));
          std::lock_guard lock(status_mu_);
          ++status_.snapshots_taken;
        });
      });
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

void Node::receive(raft::Message m) {
  post([this, m = std::move(m)]() mutable {
    const raft::NodeId from = m.from;
    const raft::Term term = m.term;
    (void)core_->step(std::move(m));
    if (from == core_->leader() && term == core_->term())
      leader_contact_ = std::chrono::steady_clock::now();
  });
}

Result<std::string> Node::begin_snapshot_receive() {
  std::lock_guard lock(store_mu_);
  return snapshots_->begin();
}

Status Node::finish_snapshot_receive(raft::Message m, const std::string& staged_dir,
                                     storage::SnapshotInfo info) {
  // Checksumming and fsyncing a large snapshot takes a while: not on the transport's thread,
  // which carries every other message too. One snapshot is verified at a time.
  std::lock_guard lock(receive_mu_);
  if (receive_thread_.joinable())
    receive_thread_.join();
  receive_thread_ =
      std::thread([this, m = std::move(m), staged_dir, info = std::move(info)]() mutable {
        seal_received_snapshot(std::move(m), staged_dir, std::move(info));
      });
  return Status();
}

void Node::seal_received_snapshot(raft::Message m, const std::string& staged_dir,
                                  storage::SnapshotInfo info) {
  const std::vector<storage::SnapshotFile> expected = info.files;
  const raft::Index index = info.meta.index;
  {
    std::lock_guard lock(store_mu_);
    // A damaged transfer is dropped here; the leader, hearing nothing, sends it again.
    auto sealed = snapshots_->commit(staged_dir, std::move(info), &expected);
    if (!sealed.ok())
      return;
    snapshots_->pin(index);  // kept until the core has taken it or turned it down
  }
  // The Ready that installs it, if the core accepts it, is handled in this same task.
  const bool queued = post([this, m = std::move(m), index]() mutable {
    (void)core_->step(std::move(m));
    while (failure_.ok() && core_->has_ready())
      handle_ready();
    unpin_snapshot(index);
  });
  if (!queued) {
    std::lock_guard lock(store_mu_);
    (void)snapshots_->unpin(index);
  }
}

void Node::propose(std::string command, std::string request_id, ProposeCallback done) {
  submit(std::move(done), [this, command = std::move(command),
                           request_id = std::move(request_id)](ProposeCallback& done) {
    if (draining_)
      return done(Status::unavailable("the node is shutting down"));
    auto r = core_->propose(encode_envelope(request_id, command));
    if (!r.ok())
      return done(r.status());
    add_waiter(*r, std::move(done));
  });
}

void Node::change_membership(raft::ConfChange cc, ProposeCallback done) {
  submit(std::move(done), [this, cc = std::move(cc)](ProposeCallback& done) {
    auto r = core_->change_membership(cc);
    if (!r.ok())
      return done(r.status());
    add_waiter(*r, std::move(done));
  });
}

void Node::add_waiter(const raft::ProposalId& id, ProposeCallback done) {
  auto [it, inserted] = waiters_.try_emplace(id.index, Waiter{id.term, std::move(done)});
  if (!inserted) {
    // An older proposal at this index was overwritten before it was applied.
    it->second.done(Status::busy("the write did not commit: leadership changed; retry"));
    it->second = Waiter{id.term, std::move(done)};
  }
}

void Node::read_barrier(StatusCallback done) {
  submit(std::move(done), [this](StatusCallback& done) {
    if (reads_to_issue_.reads.empty())
      reads_to_issue_.issued_tick = ticks_;  // for expiry while it waits for its round
    reads_to_issue_.reads.push_back(std::move(done));
  });
}

void Node::transfer_leadership(raft::NodeId to, StatusCallback done) {
  submit(std::move(done),
         [this, to](StatusCallback& done) { done(core_->transfer_leadership(to)); });
}

void Node::fail(Status s) {
  failure_ = s;
  {
    // Published before any caller hears of it, so that status() already tells why.
    std::lock_guard lock(status_mu_);
    status_.failure = s;
  }
  fail_pending(s);
}

void Node::fail_pending(const Status& why) {
  for (auto& [index, w] : std::exchange(waiters_, {}))
    w.done(why);
  for (auto& [ctx, batch] : std::exchange(reads_waiting_index_, {}))
    fail_reads(batch, why);
  fail_reads(reads_to_issue_, why);
  for (auto& [index, done] : std::exchange(reads_waiting_apply_, {}))
    done(why);
}

void Node::shutdown(std::chrono::milliseconds timeout) {
  // Whether this node led and started handing over to a live voter.
  auto handing_over = std::make_shared<std::promise<bool>>();
  auto started = handing_over->get_future();
  const bool queued = post([this, handing_over] {
    draining_ = true;
    const raft::NodeStatus st = core_->status();
    raft::NodeId best = raft::kNoNode;
    raft::Index best_match = 0;
    if (st.role == raft::Role::kLeader) {
      for (const raft::PeerStatus& p : st.peers) {
        if (p.id != st.id && p.voter && p.recent_active &&
            (best == raft::kNoNode || p.match_index > best_match)) {
          best = p.id;
          best_match = p.match_index;
        }
      }
    }
    handing_over->set_value(best != raft::kNoNode && core_->transfer_leadership(best).ok());
  });
  if (queued && started.get()) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(options_.tick);
      const NodeStatus st = status();
      if (st.raft.role != raft::Role::kLeader && st.raft.leader != raft::kNoNode &&
          st.raft.leader != options_.id)
        break;  // someone else leads now
    }
  }
  stop();
}

void Node::stop() {
  RAFTNGINX_CHECK(std::this_thread::get_id() != loop_.get_id(),
                  "Node::stop() called from the node's own thread (inside a callback)");
  std::call_once(stop_once_, [this] {
    std::deque<std::function<void()>> leftover;
    {
      std::lock_guard lock(mailbox_->mu);
      mailbox_->closed = true;
    }
    mailbox_->cv.notify_all();
    if (loop_.joinable())
      loop_.join();
    transport_->close(options_.id);
    if (snapshot_thread_.joinable())
      snapshot_thread_.join();
    {
      std::lock_guard lock(receive_mu_);
      if (receive_thread_.joinable())
        receive_thread_.join();
    }
    // Work queued before the close still answers its callers, now with an error.
    {
      std::lock_guard lock(mailbox_->mu);
      leftover.swap(mailbox_->tasks);
    }
    failure_ = Status::unavailable("the node stopped");
    for (auto& task : leftover)
      task();
    fail_pending(failure_);
  });
}

const char* role_label(const raft::NodeStatus& status) {
  if (status.learner)
    return "learner";
  switch (status.role) {
    case raft::Role::kLeader:
      return "leader";
    case raft::Role::kCandidate:
    case raft::Role::kPreCandidate:
      return "candidate";
    case raft::Role::kFollower:
      break;
  }
  return "follower";
}

void Node::publish_status() {
  raft::NodeStatus raft = core_->status();
  if (raft.role == raft::Role::kLeader)
    leader_contact_ = std::chrono::steady_clock::now();
  if (raft.leader != last_leader_) {
    if (raft.leader != raft::kNoNode)
      ++leader_changes_;
    last_leader_ = raft.leader;
  }
  published_applied_.store(applied_);
  published_leader_contact_.store(leader_contact_.time_since_epoch().count());
  std::lock_guard lock(status_mu_);
  status_.leader_contact = leader_contact_;
  status_.leader_changes = leader_changes_;
  status_.raft = std::move(raft);
  status_.applied = applied_;
  status_.snapshot_index = last_snapshot_index_;
  status_.member_contexts = contexts_;
}

NodeStatus Node::status() const {
  std::lock_guard lock(status_mu_);
  return status_;
}

}  // namespace raftnginx::node
