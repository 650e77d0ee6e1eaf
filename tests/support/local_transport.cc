#include "local_transport.h"

namespace raftnginx::transport {

LocalHub::LocalHub() : thread_([this] { run(); }) {}

LocalHub::~LocalHub() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void LocalHub::cut(raft::NodeId a, raft::NodeId b) {
  std::lock_guard lock(mu_);
  cut_.insert({a, b});
  cut_.insert({b, a});
}

void LocalHub::isolate(raft::NodeId id) {
  std::lock_guard lock(mu_);
  for (const auto& [other, r] : receivers_) {
    cut_.insert({id, other});
    cut_.insert({other, id});
  }
}

void LocalHub::heal() {
  std::lock_guard lock(mu_);
  cut_.clear();
}

void LocalHub::attach(raft::NodeId id, Receiver* r) {
  std::lock_guard lock(mu_);
  receivers_[id] = r;
}

void LocalHub::detach(raft::NodeId id) {
  std::lock_guard deliver(deliver_mu_);
  std::lock_guard lock(mu_);
  receivers_.erase(id);
}

void LocalHub::post(Envelope e) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(e));
  }
  cv_.notify_one();
}

void LocalHub::run() {
  for (;;) {
    Envelope e;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_)
        return;
      e = std::move(queue_.front());
      queue_.pop_front();
    }
    deliver(e);
  }
}

void LocalHub::deliver(Envelope& e) {
  std::lock_guard deliver_lock(deliver_mu_);
  Receiver* r = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = receivers_.find(e.msg.to);
    if (it != receivers_.end() && !cut_.count({e.msg.from, e.msg.to}))
      r = it->second;
  }
  const Sender sender{e.msg.from, true};
  if (!e.snapshot) {
    if (r)
      r->receive(std::move(e.msg), sender);
    return;
  }
  bool ok = false;
  if (r) {
    // "Stream" the files by copying them into the receiver's staging directory.
    auto staged = r->begin_snapshot_receive(sender);
    if (staged.ok()) {
      storage::Env* env = storage::Env::posix();
      ok = true;
      for (const storage::SnapshotFile& f : e.snapshot->files) {
        auto data = env->read_file(e.snapshot->dir + "/" + f.name);
        ok = ok && data.ok() && env->write_file_atomically(*staged + "/" + f.name, *data).ok();
      }
      ok = ok && r->finish_snapshot_receive(std::move(e.msg), sender, *staged, *e.snapshot).ok();
      if (!ok)
        r->abort_snapshot_receive(*staged);
    }
  }
  if (e.done)
    e.done(ok);
}

void LocalTransport::set_receiver(raft::NodeId self, Receiver* receiver) {
  hub_->attach(self, receiver);
}

void LocalTransport::send(std::vector<raft::Message> messages) {
  for (raft::Message& m : messages)
    hub_->post(LocalHub::Envelope{std::move(m), std::nullopt, {}});
}

void LocalTransport::send_snapshot(raft::Message m, storage::SnapshotInfo info,
                                   std::function<void(bool)> done) {
  hub_->post(LocalHub::Envelope{std::move(m), std::move(info), std::move(done)});
}

}  // namespace raftnginx::transport
