// LocalTransport: nodes of one process talking through a shared hub, for tests. Messages are
// delivered on the hub's own thread, in order per link; filters model partitions.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "raftnginx/env.h"
#include "transport/transport.h"

namespace raftnginx::transport {

class LocalHub {
 public:
  LocalHub();
  ~LocalHub();

  // Messages between a and b (both directions) are dropped until heal().
  void cut(raft::NodeId a, raft::NodeId b);
  void isolate(raft::NodeId id);
  void heal();

 private:
  friend class LocalTransport;
  struct Envelope {
    raft::Message msg;
    std::optional<storage::SnapshotInfo> snapshot;
    std::function<void(bool)> done;
  };
  void attach(raft::NodeId id, Receiver* r);
  void detach(raft::NodeId id);
  void post(Envelope e);
  void run();
  void deliver(Envelope& e);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Envelope> queue_;
  std::map<raft::NodeId, Receiver*> receivers_;
  std::set<std::pair<raft::NodeId, raft::NodeId>> cut_;
  // Held while delivering, so that detach() waits for a delivery in progress.
  std::mutex deliver_mu_;
  bool stopping_ = false;
  std::thread thread_;
};

class LocalTransport final : public Transport {
 public:
  explicit LocalTransport(LocalHub* hub) : hub_(hub) {}
  void set_receiver(raft::NodeId self, Receiver* receiver) override;
  void update_peers(const std::map<raft::NodeId, std::string>&) override {}
  void send(std::vector<raft::Message> messages) override;
  void send_snapshot(raft::Message m, storage::SnapshotInfo info,
                     std::function<void(bool delivered)> done) override;
  void close(raft::NodeId self) override { hub_->detach(self); }

 private:
  LocalHub* hub_;
};

}  // namespace raftnginx::transport
