// TcpTransport's inside, shared by its three parts: tcp_transport.cc (the public calls, frame
// reading, refusals), tcp_inbound.cc (the raft port: admission, hellos, messages and snapshot
// streams received) and tcp_outbound.cc (connections to peers, queues, snapshots sent). Not for
// use outside src/transport.
//
// Threads: everything here runs on the I/O thread `thread` (io), except file I/O, which
// on_file_thread() hands to `file_thread`, and the receiver, which other threads set under
// receiver_mu.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "cluster/member.h"
#include "net/address.h"
#include "net/listen.h"
#include "net/tls.h"
#include "raft/encoding.h"
#include "transport/connection.h"
#include "transport/frame.h"
#include "transport/tcp_transport.h"
#include "util/coding.h"
#include "util/printable.h"

namespace raftnginx::transport {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace std::chrono_literals;

inline constexpr size_t kReadChunk = 64 << 10;
// Snapshot streams received at once; more wait for the leader to send again.
inline constexpr size_t kMaxSnapshotStreams = 2;
inline constexpr size_t kRefusalLogLines = 20;
inline constexpr auto kRefusalLogWindow = 10s;

// Whether a peer's certificate is that of node `id` of cluster `cluster`: its common name is the
// node's name (cluster/member.h's hash) and it names the cluster. A client certificate of the
// same CA does not name the cluster; the other DNS names a node certificate carries (the hosts
// it is reached at, perhaps other nodes' names) prove nothing.
inline bool is_node_certificate(const net::PeerIdentity& peer, raft::NodeId id,
                                const std::string& cluster) {
  return !peer.common_name.empty() && cluster::node_id_for(peer.common_name) == id &&
         peer.names_cluster(cluster);
}

// A snapshot being received on one connection. At namespace scope: Impl holds an optional of it,
// which clang cannot instantiate for a class nested in one still being defined.
struct Staging {
  std::string dir;
  storage::SnapshotInfo info;
  std::string announced;   // the begin frame's payload: equal payloads, the same snapshot
  bool resumable = false;  // offered (frame 7): kept if the connection breaks
  std::map<std::string, uint64_t> remaining;  // announced bytes not yet written, by file
  std::shared_ptr<std::unique_ptr<storage::WritableFile>> file =
      std::make_shared<std::unique_ptr<storage::WritableFile>>();
  std::string file_name;

  // Bytes of every file written so far.
  uint64_t held() const {
    uint64_t left = 0;
    for (const auto& [name, bytes] : remaining)
      left += bytes;
    return info.bytes() - left;
  }
};

class TcpTransport::Impl {
 public:
  explicit Impl(TcpTransportOptions options) : opt(std::move(options)) {}
  ~Impl() {
    io.stop();
    if (thread.joinable())
      thread.join();
    file_thread.join();
  }

  struct Peer {
    Peer(asio::io_context& io, raft::NodeId peer_id, std::string addr)
        : id(peer_id), address(std::move(addr)), wake(io) {}
    raft::NodeId id;
    std::string address;
    std::deque<std::string> queue;
    uint64_t queued_bytes = 0;
    asio::steady_timer wake;
    bool removed = false;
  };

  std::shared_ptr<asio::ssl::context> tls_context() const {
    return opt.tls ? opt.tls->current() : nullptr;
  }

  // Runs `fn` (file I/O returning a Status) on the file thread; the coroutine resumes on the
  // I/O thread with its result.
  template <typename Fn>
  awaitable<Status> on_file_thread(Fn fn) {
    auto work = [this, fn = std::move(fn)](auto handler) mutable {
      asio::post(file_thread, [this, fn = std::move(fn), handler = std::move(handler)]() mutable {
        Status result = fn();
        asio::post(io, [handler = std::move(handler), result = std::move(result)]() mutable {
          handler(std::move(result));
        });
      });
    };
    Status result =
        co_await asio::async_initiate<decltype(use_awaitable), void(Status)>(work, use_awaitable);
    co_return result;
  }

  // Counts a refusal and logs it, at most kRefusalLogLines times per kRefusalLogWindow: a
  // stranger who connects in a loop must not fill the disk with the log.
  void note_refused(const Connection& conn, const std::string& why);

  template <typename Fn>
  void with_receiver(Fn fn) {
    std::lock_guard lock(receiver_mu);
    if (receiver)
      fn(*receiver);
  }

  // How long a connection may wait for its next frame.
  enum class Idle {
    kTimeout,  // an inbound connection: idle_timeout, then it is closed
    kForever,  // an outbound connection, read only for answers: its writes keep it alive
    kArmed,    // a deadline the caller armed covers the whole read
  };

  // Reads until `reader` has at least one frame, into `frames`. False once the connection is
  // closed or broken, or breaks the format. A frame that has begun must be whole within
  // io_timeout of the read that began it, however slowly its bytes trickle in (unless the
  // caller armed a deadline of its own).
  awaitable<bool> read_frames(Connection& conn, FrameReader& reader, std::vector<Frame>& frames,
                              Idle idle);

  // The raft port (tcp_inbound.cc).
  awaitable<void> accept_loop();

  // At a connection cap: closes the oldest inbound connection (from `address`, if given) that is
  // not bound to a member, whether it never finished its hello or named a stranger, so that
  // strangers cannot keep members out. False if every one belongs to a member.
  bool make_room(const std::string& address);

  void release_inbound(const Connection& conn);

  // The hello, and the identity it binds to the connection; nullopt (and the connection closed)
  // if the peer does not belong.
  awaitable<std::optional<Sender>> greet(Connection& conn, FrameReader& reader,
                                         std::vector<Frame>& frames);

  // One inbound connection: a hello, then messages, or one snapshot stream.
  awaitable<void> serve(std::shared_ptr<Connection> conn);

  // Handles one frame from `sender`; false ends the connection.
  awaitable<bool> on_frame(Connection& conn, Sender sender, Frame& f,
                           std::optional<Staging>& staging);

  void deliver(raft::Message m, Sender sender);

  // A snapshot stream begins (or, `offered`, may resume what `kept` holds of it).
  bool begin_snapshot(Connection& conn, Sender sender, const std::string& payload, bool offered,
                      std::optional<Staging>& staging);

  // The answer to an offer: what `staging` (null: refused) holds already.
  static std::string resume_answer(const std::optional<Staging>& staging);

  // A stream that ended: kept to resume if it was offered and its connection broke (unless
  // more of the same snapshot is kept already), its files removed otherwise.
  void end_stream(Staging staging, bool broken);

  // Removes the kept stream's files.
  void drop_kept();

  // Writes one chunk, within what the stream announced for its file.
  awaitable<bool> write_chunk(Connection& conn, const std::string& payload,
                              std::optional<Staging>& staging);

  awaitable<bool> end_snapshot(Connection& conn, Sender sender, const std::string& payload,
                               std::optional<Staging>& staging);

  // Peers (tcp_outbound.cc).
  // Connects to `address` and completes the TLS handshake, if any. Null if that fails.
  awaitable<std::shared_ptr<Connection>> connect(const std::string& address);

  // Connects to `address`, checks the peer is `peer`, and proves who we are. Null on failure.
  awaitable<std::shared_ptr<Connection>> dial(const std::string& address, raft::NodeId peer);

  awaitable<void> verify_member(std::string address, raft::NodeId id,
                                std::function<void(Status)> done);

  // On an outbound connection: what the peer sends back (a node being joined answers here).
  awaitable<void> read_answers(std::shared_ptr<Connection> conn, raft::NodeId peer);

  // Keeps one connection to a peer and drains its queue into it, reconnecting with backoff.
  awaitable<void> peer_loop(std::shared_ptr<Peer> peer);

  void report_unreachable(raft::NodeId id);

  // Queues a frame for `to`: its peer connection, or the connection it last reached us on.
  void enqueue(raft::NodeId to, std::string bytes);

  // Drains a connection's queue into it; ends when the connection does.
  awaitable<void> drain(std::shared_ptr<Connection> conn);

  awaitable<void> stream_snapshot(std::string address, raft::Message m, storage::SnapshotInfo info,
                                  std::function<void(bool)> done);

  // Opens a snapshot stream to `peer`: offers it, and fills `held` with what the receiver kept
  // of an earlier stream; a receiver of an earlier release, which closes the connection at an
  // offer, gets a plain begin on a new one. Null if refused or unreachable.
  awaitable<std::shared_ptr<Connection>> open_snapshot_stream(
      const std::string& address, raft::NodeId peer, const storage::SnapshotInfo& info,
      std::map<std::string, uint64_t>* held);

  // Streams one file from byte `from`.
  awaitable<bool> stream_file(Connection& conn, const std::string& dir, const std::string& name,
                              uint64_t from);

  // The hello's cluster id (opt.cluster_id at first; set_cluster_id may change it).
  std::string cluster_id() const {
    std::lock_guard lock(cluster_id_mu);
    return opt.cluster_id;
  }
  std::string hello_from_self() const {
    const std::string id = cluster_id();
    return encode_hello(Hello{id.empty() ? opt.cluster_name : id, self});
  }

  TcpTransportOptions opt;  // cluster_id guarded by cluster_id_mu
  mutable std::mutex cluster_id_mu;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread thread;
  asio::thread_pool file_thread{1};
  std::atomic<uint64_t> refused{0};
  FrameBudget frame_budget{opt.max_buffered_frame_bytes};
  std::atomic<size_t> inbound_open{0};
  std::atomic<raft::NodeId> self{raft::kNoNode};
  std::mutex receiver_mu;
  Receiver* receiver = nullptr;
  // I/O thread only.
  std::map<raft::NodeId, std::shared_ptr<Peer>> peers;
  std::map<raft::NodeId, std::weak_ptr<Connection>> inbound;
  std::map<std::string, size_t> per_address;
  // Inbound connections, oldest first (entries of closed ones are dropped as they are met).
  std::list<std::weak_ptr<Connection>> accepted;
  // note_refused's log budget.
  std::chrono::steady_clock::time_point refusal_window_start;
  size_t refusals_logged = 0;
  size_t refusals_unlogged = 0;
  size_t inbound_count = 0;
  size_t snapshot_streams = 0;
  // The latest offered stream that broke off, kept until the same snapshot is offered again or
  // another stream begins (a restart's snapshot store removes it otherwise).
  std::optional<Staging> kept;
  asio::steady_timer kept_expiry{io};  // drops `kept` after kKeepBrokenSnapshotStream
  uint64_t kept_generation = 0;
  // Peers that answered a snapshot offer: they speak it, and get no plain stream.
  std::set<raft::NodeId> offer_speakers;
  std::atomic<uint64_t> snapshot_bytes_sent{0};
  std::atomic<uint64_t> snapshot_bytes_resumed{0};
};

}  // namespace raftnginx::transport
