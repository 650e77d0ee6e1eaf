// TcpTransport: messages and snapshots between nodes over TCP (Boost.Asio, one I/O thread).
//
// Each node listens on its raft address. To each peer it keeps one outbound connection that
// carries messages one way; a snapshot goes over a connection of its own, in chunks, and is
// acknowledged. Every connection opens with a hello that names the protocol version, the
// cluster id and the sender; a connection from another cluster, or bytes that are not our
// protocol, is logged and closed without disturbing anything else.
//
//   frame:  length (4, of what follows) | type (1) | payload
//     1 hello            magic "RNGX" | version (1) | cluster id (4 + n) | sender id (8)
//                        | sender's raft address (4 + n)
//     2 message          raft/encoding.h message
//     3 snapshot begin   storage snapshot meta (encode_snapshot_info)
//     4 snapshot chunk   file name (4 + n) | bytes (4 + n)
//     5 snapshot end     the Snapshot message (raft/encoding.h)
//     6 snapshot ack     1 accepted, 0 refused (receiver to sender)
//
// Bounded memory: at most `max_queue_bytes` of messages wait per peer (newer ones are dropped
// beyond that, and the peer is reported unreachable; Raft resends), frames larger than
// `max_frame_bytes` are refused, and snapshots stream from and to files in `chunk_bytes` pieces.
//
// Threads: one I/O thread runs every connection; one more reads and writes snapshot files.
#pragma once

#include <memory>
#include <string>

#include "storage/env.h"
#include "transport/transport.h"
#include "util/defaults.h"

namespace raftnginx::transport {

struct TcpTransportOptions {
  // host:port to listen on; port 0 picks a free one (see TcpTransport::port()).
  std::string listen;
  // The raft address peers reach this node at; default: the listen address (with the port
  // actually bound). Peers that do not know this node yet (it just joined) learn it from here.
  std::string advertise;
  std::string cluster_id{defaults::kClusterName};
  uint64_t max_queue_bytes = defaults::kMaxPeerQueueBytes;
  uint64_t max_frame_bytes = defaults::kMaxFrameBytes;
  uint64_t chunk_bytes = defaults::kSnapshotChunkBytes;
  // Snapshot files are read and written through this Env, on a thread of their own: the I/O
  // thread carries every raft message and never waits for the disk.
  storage::Env* env = storage::Env::posix();
};

class TcpTransport final : public Transport {
 public:
  static Result<std::unique_ptr<TcpTransport>> start(const TcpTransportOptions& options);
  ~TcpTransport() override;

  uint16_t port() const;
  // Connections refused since start (wrong cluster, garbage, oversized frames), for tests and
  // metrics.
  uint64_t refused_connections() const;

  void set_receiver(raft::NodeId self, Receiver* receiver) override;
  void update_peers(const std::map<raft::NodeId, std::string>& contexts) override;
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
