// Transport: how a node's messages reach its peers. The TCP implementation lives beside this
// interface; tests use LocalTransport (tests/support: one process, many nodes).
//
// Raft tolerates loss, so send() never blocks and drops what it cannot deliver; it tells the
// receiver which peers it could not reach, so that the core stops pipelining to them. Snapshots
// are files, streamed by the transport in chunks; the receiving side stages them in the node's
// snapshot store before the accompanying message is handed over.
//
// Threads: every Transport method is thread-safe. The transport calls its Receiver from its own
// threads, never from inside a Transport call, and not at all once close() returned.
//
// What an acknowledgement means: send_snapshot's `done(true)` says the receiver staged every file,
// verified nothing yet, and took the message (finish_snapshot_receive returned ok); `done(false)`
// says the stream failed or was refused. Messages carry no acknowledgement of their own: Raft's
// responses are the acknowledgements.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "raft/types.h"
#include "storage/snapshot_store.h"

namespace raftnginx::transport {

// Who sent something, as the transport established it: the id the connection is bound to (every
// message on it must say it is from this id), and whether a certificate of the cluster's CA
// proves that id (TLS), or the peer only claimed it in its hello (plaintext, loopback only).
struct Sender {
  raft::NodeId id = raft::kNoNode;
  bool authenticated = false;
};

// The receiving end, implemented by the node.
class Receiver {
 public:
  virtual ~Receiver() = default;
  virtual void receive(raft::Message m, Sender sender) = 0;
  // Messages to `peer` could not be delivered (no connection, or too many queued).
  virtual void unreachable(raft::NodeId peer) = 0;
  // A fresh directory to stage a snapshot `sender` is about to stream, or why not (a snapshot
  // comes only from the leader).
  virtual Result<std::string> begin_snapshot_receive(Sender sender) = 0;
  // The stream broke off: the staged files go.
  virtual void abort_snapshot_receive(const std::string& staged_dir) = 0;
  // The files of `info` are complete in `staged_dir`: verify them against `info`, seal them and
  // step `m`. The receiver may do that later, on its own thread; a snapshot that fails the
  // check is dropped, and the leader sends it again. Returns whether it was taken.
  virtual Status finish_snapshot_receive(raft::Message m, Sender sender,
                                         const std::string& staged_dir,
                                         storage::SnapshotInfo info) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Where this node's inbound traffic goes. Called once, before peers can reach it.
  virtual void set_receiver(raft::NodeId self, Receiver* receiver) = 0;
  // The members' raft addresses (host:port); called whenever membership changes. Messages go
  // only to these peers.
  virtual void update_peers(const std::map<raft::NodeId, std::string>& raft_addresses) = 0;
  virtual void send(std::vector<raft::Message> messages) = 0;
  // Streams the snapshot files of `info` and then `m` to m.to; `done` reports the outcome (it
  // may run on any thread).
  virtual void send_snapshot(raft::Message m, storage::SnapshotInfo info,
                             std::function<void(bool delivered)> done) = 0;
  // Detaches this node: nothing is delivered to its receiver once this returns.
  virtual void close(raft::NodeId self) = 0;
};

}  // namespace raftnginx::transport
