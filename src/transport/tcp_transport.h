// TcpTransport: messages and snapshots between nodes over TCP, plaintext or mutual TLS (Boost.Asio,
// one I/O thread). The wire format is in frame.h.
//
// Each node listens on its raft address and keeps one outbound connection to each member, which
// carries its messages; a snapshot goes over a connection of its own, in chunks, and is
// acknowledged. Peers come only from the membership (update_peers), never from a hello. A peer
// that is not a member yet (a node being joined answers a leader it does not know) is answered
// on the connection its messages came in on, if it is open.
//
// Who is talking: every connection opens with a hello that names the cluster and the sender; the
// sender's id is bound to the connection (Sender, in transport.h). With TLS, both ends present a
// certificate of the cluster's CA, and one of the names it carries must hash to that id
// (cluster::node_id_for): a node can speak only for itself. Without TLS the hello's id is taken
// at its word, which is why the daemon allows that only on loopback.
//
// Bounded, whatever a peer sends: frames are read as their bytes arrive (an announced length
// allocates nothing), frames over max_frame_bytes end the connection, and all frames in progress
// together hold at most max_buffered_frame_bytes; every frame that has begun must be whole within
// io_timeout of its first byte and an idle connection is closed after idle_timeout; inbound
// connections are capped in all and per remote address, and when the cap is reached the oldest
// connection not bound to a member makes room, so strangers cannot keep members out; at most
// max_queue_bytes of messages wait
// per peer (newer ones are dropped and the peer reported unreachable; Raft resends), a snapshot
// stream may write no more than the sizes it announced, and a stream that breaks off has its
// staged files removed, except the latest offered one (frame.h), which is kept (one snapshot's
// size on disk at most) so that the sender resumes it where it stopped. Accepting backs off while
// the process is out of file descriptors.
//
// Threads: one I/O thread runs every connection; one more reads and writes snapshot files. The
// Receiver is called from those threads.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "raftnginx/env.h"
#include "transport/transport.h"
#include "util/defaults.h"

namespace raftnginx::net {
class TlsContext;
}

namespace raftnginx::transport {

struct TcpTransportOptions {
  // host:port to listen on; port 0 picks a free one (see TcpTransport::port()).
  std::string listen;
  // The name the members' certificates carry (--cluster-name).
  std::string cluster_name{defaults::kClusterName};
  // What hellos carry, so that members of another cluster are refused: the name, unless the
  // cluster was made from a backup (cli/restore.h). Empty: a new node not in a cluster yet, which
  // takes a hello from any cluster, and introduces itself by the name, until set_cluster_id.
  std::string cluster_id{defaults::kClusterName};
  // Mutual TLS with the cluster's node certificates; null: plaintext.
  std::shared_ptr<net::TlsContext> tls;
  uint64_t max_queue_bytes = defaults::kMaxPeerQueueBytes;
  uint64_t max_frame_bytes = defaults::kMaxFrameBytes;
  uint64_t max_buffered_frame_bytes = defaults::kMaxBufferedFrameBytes;
  uint64_t chunk_bytes = defaults::kSnapshotChunkBytes;
  size_t max_inbound_connections = defaults::kMaxRaftConnections;
  size_t max_connections_per_address = defaults::kMaxRaftConnectionsPerAddress;
  // A frame (or a TLS handshake, or a hello) that has begun must be whole within this.
  std::chrono::milliseconds io_timeout = defaults::kRaftIoTimeout;
  // An inbound connection with nothing to read for this long is closed.
  std::chrono::milliseconds idle_timeout = defaults::kRaftIdleTimeout;
  // Snapshot files are read and written through this Env, on a thread of their own: the I/O
  // thread carries every raft message and never waits for the disk.
  storage::Env* env = storage::Env::posix();
};

class TcpTransport final : public Transport {
 public:
  static Result<std::unique_ptr<TcpTransport>> start(const TcpTransportOptions& options);
  ~TcpTransport() override;

  uint16_t port() const;
  // Connections refused since start (wrong cluster or identity, garbage, oversized frames, over
  // a limit), for tests and metrics.
  uint64_t refused_connections() const;
  // Inbound connections open now.
  size_t inbound_connections() const;
  // Snapshot bytes streamed to peers since start, and those not sent again because the peer kept
  // them from a stream that broke off.
  uint64_t snapshot_bytes_sent() const;
  uint64_t snapshot_bytes_resumed() const;

  // Connects to `address` and checks that the certificate answering names member `id` (with
  // TLS; plaintext proves nothing and passes), sending nothing: a node about to be added must
  // be the node it says. `done` runs on the I/O thread with OK, Unavailable (no TLS answer in
  // time) or InvalidArgument (a certificate for someone else).
  void verify_member(const std::string& address, raft::NodeId id, std::function<void(Status)> done);

  // The cluster this node joined (see TcpTransportOptions::cluster_id). Any thread.
  void set_cluster_id(const std::string& id);
  std::string cluster_id() const;

  void set_receiver(raft::NodeId self, Receiver* receiver) override;
  void update_peers(const std::map<raft::NodeId, std::string>& raft_addresses) override;
  void send(std::vector<raft::Message> messages) override;
  void send_snapshot(raft::Message m, storage::SnapshotInfo info,
                     std::function<void(bool delivered)> done) override;
  void close(raft::NodeId self) override;

  class Impl;

 private:
  explicit TcpTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace raftnginx::transport
