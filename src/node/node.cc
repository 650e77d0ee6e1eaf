// The node's lifecycle, its raft loop and the calls other threads make into it.
#include "node/node.h"

#include <spdlog/spdlog.h>

#include <future>

#include "node/backend_call.h"
#include "node/envelope.h"
#include "node/inbound.h"

namespace raftnginx::node {

Node::Node(NodeOptions options, std::unique_ptr<fsm::StateMachine> fsm,
           transport::Transport* transport)
    : options_(std::move(options)),
      fsm_(std::move(fsm)),
      transport_(transport),
      sessions_(options_.sessions),
      last_snapshot_time_(options_.clock->now()) {}

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
  transport->update_peers(node->membership().raft_addresses());
  node->publish_status();
  node->loop_ = std::thread([n = node.get()] { n->run(); });
  if (node->options_.scrub_interval.count() > 0)
    node->scrub_thread_ = std::thread([n = node.get()] { n->scrub_loop(); });
  return node;
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
  auto next_tick = options_.clock->now() + options_.tick;
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
    const auto now = options_.clock->now();
    if (now >= next_tick) {
      core_->tick();
      ++ticks_;
      prefer_leader();
      expire_reads();
      expire_broken_streams();
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

void Node::prefer_leader() {
  if (options_.preferred_leaders.empty())
    return;
  const raft::NodeStatus status = core_->status();
  if (status.role != raft::Role::kLeader || status.hard_state.term != leading_term_) {
    // Led again soon after handing over (the preferred member lost it, or another node's list
    // differs): wait twice as long before the next hand-over, so leadership cannot flap.
    if (status.role == raft::Role::kLeader && handed_over_at_tick_ != 0 &&
        ticks_ - handed_over_at_tick_ < 2 * hold_ticks_)
      hold_ticks_ = std::min(hold_ticks_ * 2, kMaxPreferredLeaderHoldTicks);
    leading_term_ = status.role == raft::Role::kLeader ? status.hard_state.term : 0;
    leading_since_tick_ = ticks_;
    return;
  }
  if (hold_ticks_ == 0)
    hold_ticks_ =
        static_cast<uint64_t>(options_.election_ticks) * defaults::kPreferredLeaderHoldElections;
  const auto every = static_cast<uint64_t>(options_.election_ticks);
  const uint64_t led = ticks_ - leading_since_tick_;
  if (led < hold_ticks_ || led % every != 0)
    return;
  // Ready: heard from within an election timeout (this node's own record: the core's
  // recent_active is cleared at each of its quorum checks), and holding what is committed.
  raft::NodeStatus ready = status;
  for (raft::PeerStatus& p : ready.peers) {
    auto heard = heard_at_tick_.find(p.id);
    p.recent_active = heard != heard_at_tick_.end() && ticks_ - heard->second <= every;
    if (p.match_index >= status.hard_state.commit)
      p.match_index = status.last_index;
  }
  const raft::NodeId to = cluster::preferred_transfer_target(ready, options_.preferred_leaders);
  if (to == raft::kNoNode)
    return;
  const cluster::Member* member = membership().find(to);
  spdlog::info("handing leadership to {}, preferred over this node (--preferred-leader)",
               member ? member->name : std::to_string(to));
  handed_over_at_tick_ = ticks_;
  (void)core_->transfer_leadership(to);
}

void Node::handle_ready() {
  raft::Ready rd = core_->ready();
  const bool leadership_changed = rd.soft_state.has_value();
  if (Status s = pipeline_->run(std::move(rd)); !s.ok())
    return fail(s);
  if (leadership_changed) {
    // A ReadIndex request sent to a leader that is gone is never answered: let clients retry.
    for (auto& [ctx, batch] : std::exchange(reads_waiting_index_, {}))
      fail_reads(batch, Status::not_leader("leadership changed during the read; retry"));
  }
  serve_reads();
  maybe_snapshot();
}

void Node::receive(raft::Message m, transport::Sender sender) {
  post([this, m = std::move(m), sender]() mutable {
    step_from_network(std::move(m), sender, false);
  });
}

void Node::step_from_network(raft::Message m, transport::Sender sender, bool from_snapshot_stream) {
  const cluster::Membership& members = membership();
  if (const char* rule =
          refuse_inbound(m, sender, members.conf, members.removed, from_snapshot_stream))
    return count_violation(rule, sender.id);
  const raft::NodeId from = m.from;
  const raft::Term term = m.term;
  Status s = core_->step(std::move(m));
  if (s.code() == Status::Code::kProtocolViolation)
    return count_violation(s.message(), from);
  if (from == core_->leader() && term == core_->term())
    leader_contact_ = options_.clock->now();
  heard_at_tick_[from] = ticks_;
}

void Node::count_violation(const std::string& kind, raft::NodeId from) {
  uint64_t count = 0;
  {
    std::lock_guard lock(status_mu_);
    count = ++status_.protocol_violations[kind];
  }
  const auto now = options_.clock->now();
  if (now - last_violation_log_ < std::chrono::seconds(1))
    return;
  last_violation_log_ = now;
  spdlog::warn(
      "protocol violation by node {}: {} ({} of this kind so far; at most one such line "
      "a second)",
      membership().name_of(from), kind, count);
}

void Node::unreachable(raft::NodeId peer) {
  post([this, peer] { core_->report_unreachable(peer); });
}

void Node::propose(std::string command, std::string request_id, ProposeCallback done) {
  submit(std::move(done), [this, command = std::move(command),
                           request_id = std::move(request_id)](ProposeCallback& done) {
    if (draining_)
      return done(Status::unavailable("the node is shutting down"));
    auto r = core_->propose(encode_envelope(request_id, options_.clock->wall_ms(), command));
    if (!r.ok())
      return done(r.status());
    add_waiter(*r, std::move(done));
  });
}

void Node::propose_checkpoint(ProposeCallback done) {
  submit(std::move(done), [this](ProposeCallback& done) {
    if (draining_)
      return done(Status::unavailable("the node is shutting down"));
    auto r = core_->propose(encode_checkpoint());
    if (!r.ok())
      return done(r.status());
    add_waiter(*r, std::move(done));
  });
}

void Node::propose_replacement(std::string backup, ProposeCallback done) {
  submit(std::move(done), [this, backup = std::move(backup)](ProposeCallback& done) {
    if (draining_)
      return done(Status::unavailable("the node is shutting down"));
    auto r = core_->propose(encode_replacement(backup));
    if (!r.ok())
      return done(r.status());
    add_waiter(*r, std::move(done));
  });
}

void Node::stage_view(std::function<void(Result<StagedView>)> done) {
  submit(std::move(done), [this](std::function<void(Result<StagedView>)>& done) {
    if (staging_view_)
      return done(Status::busy("a backup is being written on this node; retry when it is done"));
    const auto start = std::chrono::steady_clock::now();
    Result<std::unique_ptr<fsm::Snapshot>> view = Status::io_error("no view");
    if (Status s = take_view(&view); !s.ok())
      return done(s);
    if (!view.ok())
      return done(view.status());
    if ((*view)->index() == 0)
      return done(Status::unavailable("nothing was applied here yet: no state to back up"));
    StagedView staged{"",
                      {},
                      (*view)->index(),
                      (*view)->term(),
                      fsm_->name(),
                      std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - start)};
    staging_view_ = true;
    if (backup_thread_.joinable())
      backup_thread_.join();
    backup_thread_ = std::thread([this, view = std::move(view).value(), staged, done]() mutable {
      Result<std::string> dir = Status::io_error("no staging directory");
      {
        std::lock_guard lock(store_mu_);
        dir = snapshots_->begin();
      }
      Status written = dir.status();
      if (dir.ok()) {
        written =
            backend_call("snapshot writer", [&] { return view->write_to(options_.env, *dir); });
        if (written.ok()) {
          auto files = storage::scan_snapshot_files(options_.env, *dir);
          written = files.status();
          if (files.ok())
            staged.files = std::move(files).value();
        }
        if (!written.ok())
          (void)options_.env->remove_all(*dir);
      }
      view.reset();  // released before the node may stop and close the state machine
      post([this] { staging_view_ = false; });
      if (!written.ok())
        return done(written);
      staged.dir = *dir;
      done(std::move(staged));
    });
  });
}

void Node::join_state_readers() {
  if (snapshot_thread_.joinable())
    snapshot_thread_.join();
  if (backup_thread_.joinable())
    backup_thread_.join();
}

std::optional<uint64_t> Node::checkpoint_hash(raft::Index index) const {
  std::lock_guard lock(status_mu_);
  auto it = checkpoint_hashes_.find(index);
  return it == checkpoint_hashes_.end() ? std::nullopt : std::optional<uint64_t>(it->second);
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

void Node::transfer_leadership(raft::NodeId to, StatusCallback done) {
  submit(std::move(done),
         [this, to](StatusCallback& done) { done(core_->transfer_leadership(to)); });
}

void Node::observe(StatusObserver observer) {
  post([this, observer = std::move(observer)]() mutable {
    observer(status());
    observers_.push_back(std::move(observer));
  });
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
  // A proposal that was appended may still commit elsewhere: its outcome is unknown.
  const Status unknown = why.code() == Status::Code::kOutcomeUnknown
                             ? why
                             : Status::outcome_unknown(why.message() +
                                                       "; the write may still "
                                                       "commit");
  for (auto& [index, w] : std::exchange(waiters_, {}))
    w.done(unknown);
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
    const raft::NodeId best = cluster::best_transfer_target(core_->status());
    handing_over->set_value(best != raft::kNoNode && core_->transfer_leadership(best).ok());
  });
  if (queued && started.get()) {
    // Waits for the new leader on this node's own status, as its observers see it.
    std::mutex mu;
    std::condition_variable cv;
    bool moved = false;
    auto signal = std::make_shared<std::function<void(bool)>>([&](bool value) {
      std::lock_guard lock(mu);
      moved = moved || value;
      cv.notify_all();
    });
    std::weak_ptr<std::function<void(bool)>> weak = signal;
    observe([weak, self = options_.id](const NodeStatus& st) {
      if (auto fn = weak.lock())
        (*fn)(st.raft.leader != raft::kNoNode && st.raft.leader != self);
    });
    std::unique_lock lock(mu);
    cv.wait_for(lock, timeout, [&] { return moved; });
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
    scrub_cancel_.cancel();  // a pass in progress stops at its next megabyte
    if (scrub_thread_.joinable())
      scrub_thread_.join();
    if (loop_.joinable())
      loop_.join();
    // Sealed, so that the next start finds a witness for the last record written.
    if (log_) {
      if (Status s = log_->close(); !s.ok())
        spdlog::warn("log: could not seal it at shutdown: {}", s.to_string());
    }
    transport_->close(options_.id);
    join_state_readers();
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
    observers_.clear();
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
    leader_contact_ = options_.clock->now();
  if (raft.leader != last_leader_) {
    if (raft.leader != raft::kNoNode)
      ++leader_changes_;
    last_leader_ = raft.leader;
  }
  published_applied_.store(applied_);
  published_leader_.store(raft.leader);
  published_leader_contact_.store(leader_contact_.time_since_epoch().count());
  NodeStatus copy;
  {
    std::lock_guard lock(status_mu_);
    status_.leader_contact = leader_contact_;
    status_.leader_changes = leader_changes_;
    status_.raft = std::move(raft);
    status_.applied = applied_;
    status_.snapshot_index = last_snapshot_index_;
    if (published_membership_version_ != membership_version_) {
      status_.membership = membership();
      published_membership_version_ = membership_version_;
    }
    status_.sessions = sessions_.size();
    if (observers_.empty())
      return;
    const Observed now{status_.raft.role,       status_.raft.leader,
                       status_.raft.learner,    status_.raft.hard_state.term,
                       membership_version_,     status_.failure.ok(),
                       status_.damage.ok(),     status_.checkpoint_index,
                       status_.snapshots_taken, status_.snapshots_installed};
    if (now == observed_)
      return;
    observed_ = now;
    copy = status_;
  }
  for (const StatusObserver& observer : observers_)
    observer(copy);
}

NodeStatus Node::status() const {
  std::lock_guard lock(status_mu_);
  return status_;
}

ReplicaStatus Node::replica_status() const {
  const NodeStatus st = status();
  const cluster::Member* leader = st.membership.find(st.raft.leader);
  return ReplicaStatus{st.membership.name_of(st.raft.id),
                       role_label(st.raft),
                       st.raft.hard_state.term,
                       st.raft.leader == raft::kNoNode ? "" : st.membership.name_of(st.raft.leader),
                       leader ? leader->http_address : "",
                       st.raft.hard_state.commit,
                       st.applied};
}

}  // namespace raftnginx::node
