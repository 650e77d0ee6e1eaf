#include "transport/tcp_transport.h"

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
#include "util/coding.h"
#include "util/printable.h"

namespace raftnginx::transport {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace std::chrono_literals;

constexpr size_t kReadChunk = 64 << 10;
// Snapshot streams received at once; more wait for the leader to send again.
constexpr size_t kMaxSnapshotStreams = 2;
constexpr size_t kRefusalLogLines = 20;
constexpr auto kRefusalLogWindow = 10s;

// Whether a peer's certificate is that of node `id` of cluster `cluster`: its common name is the
// node's name (cluster/member.h's hash) and it names the cluster. A client certificate of the
// same CA does not name the cluster; the other DNS names a node certificate carries (the hosts
// it is reached at, perhaps other nodes' names) prove nothing.
bool is_node_certificate(const net::PeerIdentity& peer, raft::NodeId id,
                         const std::string& cluster) {
  return !peer.common_name.empty() && cluster::node_id_for(peer.common_name) == id &&
         peer.names_cluster(cluster);
}

}  // namespace

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

  // A snapshot being received on one connection.
  struct Staging {
    std::string dir;
    storage::SnapshotInfo info;
    std::map<std::string, uint64_t> remaining;  // announced bytes not yet written, by file
    std::shared_ptr<std::unique_ptr<storage::WritableFile>> file =
        std::make_shared<std::unique_ptr<storage::WritableFile>>();
    std::string file_name;
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
  void note_refused(const Connection& conn, const std::string& why) {
    ++refused;
    const auto now = std::chrono::steady_clock::now();
    if (now - refusal_window_start >= kRefusalLogWindow) {
      if (refusals_unlogged > 0) {
        spdlog::warn("raft port: {} more connections refused in the last {} s (not logged)",
                     refusals_unlogged,
                     std::chrono::duration_cast<std::chrono::seconds>(kRefusalLogWindow).count());
      }
      refusal_window_start = now;
      refusals_logged = 0;
      refusals_unlogged = 0;
    }
    if (refusals_logged++ < kRefusalLogLines) {
      spdlog::warn("raft port: refusing {}: {}", conn.remote(), why);
    } else {
      ++refusals_unlogged;
    }
  }

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
                              Idle idle) {
    std::string chunk(kReadChunk, '\0');
    bool frame_deadline = false;
    while (frames.empty()) {
      if (idle != Idle::kArmed && reader.mid_frame()) {
        if (!frame_deadline)
          conn.arm(opt.io_timeout);
        frame_deadline = true;
      } else if (idle == Idle::kTimeout) {
        conn.arm(opt.idle_timeout);
      } else if (idle == Idle::kForever) {
        conn.disarm();
      }
      const size_t n = co_await conn.read_some(chunk.data(), chunk.size());
      if (n == 0)
        co_return false;
      if (Status s = reader.feed(std::string_view(chunk.data(), n), &frames); !s.ok()) {
        note_refused(conn, s.message());
        conn.close();
        co_return false;
      }
    }
    if (idle != Idle::kArmed)
      conn.disarm();
    co_return true;
  }

  // Drains a connection's queue into it; ends when the connection does.
  awaitable<void> drain(std::shared_ptr<Connection> conn) {
    while (conn->is_open()) {
      if (conn->queue.empty()) {
        boost::system::error_code ec;
        conn->wake.expires_at(asio::steady_timer::time_point::max());
        co_await conn->wake.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      std::string batch;
      while (!conn->queue.empty() && batch.size() < (1u << 20)) {
        batch += conn->queue.front();
        conn->queued_bytes -= conn->queue.front().size();
        conn->queue.pop_front();
      }
      if (!co_await conn->write(batch))
        conn->close();
    }
    conn->writing = false;
  }

  awaitable<void> accept_loop() {
    auto last_warning = std::chrono::steady_clock::time_point();
    for (;;) {
      boost::system::error_code ec;
      tcp::socket sock = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
      if (!acceptor.is_open())
        co_return;
      if (ec) {
        // Out of file descriptors, for one: wait a little instead of spinning on the error.
        const auto now = std::chrono::steady_clock::now();
        if (now - last_warning > 10s) {
          spdlog::warn("raft port: accept failed: {}; backing off", ec.message());
          last_warning = now;
        }
        asio::steady_timer pause(io, 100ms);
        co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      auto conn = std::make_shared<Connection>(std::move(sock), tls_context());
      const bool room = (inbound_count < opt.max_inbound_connections || make_room(std::string())) &&
                        (per_address[conn->remote()] < opt.max_connections_per_address ||
                         make_room(conn->remote()));
      if (!room) {
        note_refused(*conn, "too many connections");
        conn->close();
        if (per_address[conn->remote()] == 0)
          per_address.erase(conn->remote());
        continue;
      }
      ++per_address[conn->remote()];
      ++inbound_count;
      inbound_open = inbound_count;
      accepted.push_back(conn);
      asio::co_spawn(io, serve(conn), asio::detached);
    }
  }

  // At a connection cap: closes the oldest inbound connection (from `address`, if given) that is
  // not bound to a member, whether it never finished its hello or named a stranger, so that
  // strangers cannot keep members out. False if every one belongs to a member.
  bool make_room(const std::string& address) {
    for (auto it = accepted.begin(); it != accepted.end();) {
      std::shared_ptr<Connection> conn = it->lock();
      if (!conn || !conn->is_open()) {
        it = accepted.erase(it);
        continue;
      }
      if ((address.empty() || conn->remote() == address) && !peers.count(conn->peer_id)) {
        note_refused(*conn, "making room for a member: the oldest connection of a non-member");
        conn->close();
        accepted.erase(it);
        return true;
      }
      ++it;
    }
    return false;
  }

  void release_inbound(const Connection& conn) {
    accepted.remove_if([&conn](const std::weak_ptr<Connection>& weak) {
      std::shared_ptr<Connection> c = weak.lock();
      return !c || c.get() == &conn;
    });
    --inbound_count;
    inbound_open = inbound_count;
    if (auto it = per_address.find(conn.remote()); it != per_address.end() && --it->second == 0)
      per_address.erase(it);
  }

  // The hello, and the identity it binds to the connection; nullopt (and the connection closed)
  // if the peer does not belong.
  awaitable<std::optional<Sender>> greet(Connection& conn, FrameReader& reader,
                                         std::vector<Frame>& frames) {
    conn.arm(opt.io_timeout);
    if (!co_await conn.handshake(true)) {
      note_refused(conn, "TLS handshake failed");
      co_return std::nullopt;
    }
    if (!co_await read_frames(conn, reader, frames, Idle::kArmed)) {
      note_refused(conn, "no hello");
      co_return std::nullopt;
    }
    const Frame first = std::move(frames.front());
    frames.erase(frames.begin());
    auto hello = first.type == FrameType::kHello
                     ? decode_hello(first.payload)
                     : Result<Hello>(Status::invalid_argument("the first frame is not a hello"));
    std::string why;
    if (!hello.ok()) {
      why = hello.status().message();
    } else if (hello->cluster_id != opt.cluster_id) {
      why = "cluster '" + printable(hello->cluster_id, 64) + "' (this cluster is '" +
            opt.cluster_id + "')";
    } else if (hello->from == self) {
      why = "a hello that claims to be this node";
    } else if (conn.tls() && !is_node_certificate(conn.identity(), hello->from, opt.cluster_id)) {
      why = "its certificate (" + conn.identity().describe() +
            ") is not a node certificate of this cluster for the node it claims to be";
    }
    if (!why.empty()) {
      note_refused(conn, why);
      conn.close();
      co_return std::nullopt;
    }
    conn.peer_id = hello->from;
    co_return Sender{hello->from, conn.tls()};
  }

  // One inbound connection: a hello, then messages, or one snapshot stream.
  awaitable<void> serve(std::shared_ptr<Connection> conn) {
    FrameReader reader(opt.max_frame_bytes, &frame_budget);
    std::vector<Frame> frames;
    std::optional<Sender> sender = co_await greet(*conn, reader, frames);
    std::optional<Staging> staging;
    if (sender) {
      inbound[sender->id] = conn;  // where answers to a peer that is no member go
      bool open = true;
      while (open) {
        for (Frame& f : frames) {
          open = co_await on_frame(*conn, *sender, f, staging);
          if (!open)
            break;
        }
        frames.clear();
        open = open && co_await read_frames(*conn, reader, frames, Idle::kTimeout);
      }
      if (auto it = inbound.find(sender->id); it != inbound.end() && it->second.lock() == conn)
        inbound.erase(it);
    }
    if (staging) {
      const std::string dir = staging->dir;
      with_receiver([&](Receiver& r) { r.abort_snapshot_receive(dir); });
      --snapshot_streams;
    }
    conn->close();
    release_inbound(*conn);
  }

  // Handles one frame from `sender`; false ends the connection.
  awaitable<bool> on_frame(Connection& conn, Sender sender, Frame& f,
                           std::optional<Staging>& staging) {
    switch (f.type) {
      case FrameType::kMessage: {
        auto m = raft::decode_message(f.payload);
        if (!m.ok()) {
          note_refused(conn, m.status().to_string());
          co_return false;
        }
        deliver(std::move(m).value(), sender);
        co_return true;
      }
      case FrameType::kSnapshotBegin:
        co_return begin_snapshot(conn, sender, f.payload, staging);
      case FrameType::kSnapshotChunk: {
        const bool written = co_await write_chunk(conn, f.payload, staging);
        co_return written;
      }
      case FrameType::kSnapshotEnd: {
        const bool finished = co_await end_snapshot(conn, sender, f.payload, staging);
        co_return finished;
      }
      default:
        note_refused(conn, "unexpected frame type " + std::to_string(static_cast<int>(f.type)));
        co_return false;
    }
  }

  void deliver(raft::Message m, Sender sender) {
    with_receiver([&](Receiver& r) { r.receive(std::move(m), sender); });
  }

  bool begin_snapshot(Connection& conn, Sender sender, const std::string& payload,
                      std::optional<Staging>& staging) {
    auto info = storage::decode_snapshot_info(payload);
    if (!info.ok() || staging) {
      note_refused(conn, "malformed snapshot stream");
      return false;
    }
    if (snapshot_streams >= kMaxSnapshotStreams)
      return false;  // the leader sends it again later
    Result<std::string> dir = Status::unavailable("the node is closed");
    with_receiver([&](Receiver& r) { dir = r.begin_snapshot_receive(sender); });
    if (!dir.ok()) {
      note_refused(conn, "snapshot stream: " + dir.status().message());
      return false;
    }
    // Refused at once rather than when the disk fills up: a leader retries later.
    auto free = opt.env->free_bytes(*dir);
    if (!free.ok() || info->bytes() > *free) {
      note_refused(conn, "snapshot stream of " + std::to_string(info->bytes()) + " bytes: " +
                             (free.ok() ? std::to_string(*free) + " bytes free on the disk"
                                        : free.status().message()));
      with_receiver([&](Receiver& r) { r.abort_snapshot_receive(*dir); });
      return false;
    }
    staging.emplace();
    staging->dir = *dir;
    staging->info = std::move(info).value();
    for (const storage::SnapshotFile& file : staging->info.files)
      staging->remaining[file.name] = file.size;
    ++snapshot_streams;
    return true;
  }

  // Writes one chunk, within what the stream announced for its file.
  awaitable<bool> write_chunk(Connection& conn, const std::string& payload,
                              std::optional<Staging>& staging) {
    Reader r(payload);
    const std::string name(r.bytes());
    const std::string_view bytes = r.bytes();
    auto room =
        staging ? staging->remaining.find(name) : std::map<std::string, uint64_t>::iterator();
    if (!r.done() || !staging || room == staging->remaining.end() || bytes.size() > room->second) {
      note_refused(conn, "snapshot chunk outside what the stream announced");
      co_return false;
    }
    room->second -= bytes.size();
    const bool new_file = name != staging->file_name;
    staging->file_name = name;
    auto write = [env = opt.env, file = staging->file, new_file, path = staging->dir + "/" + name,
                  data = std::string(bytes)]() -> Status {
      if (new_file) {
        if (*file) {
          if (Status s = (*file)->sync(); !s.ok())
            return s;
        }
        uint64_t size = 0;
        auto opened = env->open_for_append(path, &size);
        if (!opened.ok())
          return opened.status();
        *file = std::move(opened).value();
      }
      return (*file)->append(data);
    };
    Status written = co_await on_file_thread(std::move(write));
    co_return written.ok();
  }

  awaitable<bool> end_snapshot(Connection& conn, Sender sender, const std::string& payload,
                               std::optional<Staging>& staging) {
    auto m = raft::decode_message(payload);
    bool complete = m.ok() && staging.has_value();
    if (staging) {
      for (const auto& [name, left] : staging->remaining)
        complete = complete && left == 0;
    }
    if (!complete) {
      note_refused(conn, "snapshot stream ended before its files were whole");
      co_return false;
    }
    auto sync = [file = staging->file]() -> Status {
      Status s = *file ? (*file)->sync() : Status();
      file->reset();
      return s;
    };
    const Status synced = co_await on_file_thread(std::move(sync));
    Status taken = synced;
    if (synced.ok()) {
      taken = Status::unavailable("the node is closed");
      with_receiver([&](Receiver& r) {
        taken =
            r.finish_snapshot_receive(std::move(m).value(), sender, staging->dir, staging->info);
      });
    }
    if (!taken.ok()) {
      spdlog::warn("raft port: snapshot {} refused: {}", staging->info.meta.index,
                   taken.to_string());
      const std::string dir = staging->dir;
      with_receiver([&](Receiver& r) { r.abort_snapshot_receive(dir); });
    }
    staging.reset();  // the receiver owns the staged files now
    --snapshot_streams;
    const std::string ack =
        encode_frame(FrameType::kSnapshotAck, taken.ok() ? "\1" : std::string(1, '\0'));
    co_await conn.write(ack);
    co_return false;
  }

  // Connects to `address` and completes the TLS handshake, if any. Null if that fails.
  awaitable<std::shared_ptr<Connection>> connect(const std::string& address) {
    auto parsed = net::parse_address(address);
    if (!parsed.ok())
      co_return nullptr;
    boost::system::error_code ec;
    tcp::resolver resolver(io);
    const std::string port = std::to_string(parsed->port);
    auto endpoints = co_await resolver.async_resolve(parsed->host, port,
                                                     asio::redirect_error(use_awaitable, ec));
    if (ec)
      co_return nullptr;
    tcp::socket sock(io);
    asio::steady_timer connect_deadline(io, opt.io_timeout);
    connect_deadline.async_wait([&sock](boost::system::error_code e) {
      if (!e)
        sock.close(e);
    });
    co_await asio::async_connect(sock, endpoints, asio::redirect_error(use_awaitable, ec));
    connect_deadline.cancel();
    if (ec || !sock.is_open())
      co_return nullptr;
    sock.set_option(asio::socket_base::keep_alive(true), ec);
    auto conn = std::make_shared<Connection>(std::move(sock), tls_context());
    conn->arm(opt.io_timeout);
    if (!co_await conn->handshake(false)) {
      conn->close();
      co_return nullptr;
    }
    co_return conn;
  }

  // Connects to `address`, checks the peer is `peer`, and proves who we are. Null on failure.
  awaitable<std::shared_ptr<Connection>> dial(const std::string& address, raft::NodeId peer) {
    std::shared_ptr<Connection> conn = co_await connect(address);
    if (!conn)
      co_return nullptr;
    if (conn->tls() && !is_node_certificate(conn->identity(), peer, opt.cluster_id)) {
      spdlog::warn("raft port: {} presented a certificate ({}) that is not the member's", address,
                   conn->identity().describe());
      conn->close();
      co_return nullptr;
    }
    const std::string hello = encode_hello(Hello{opt.cluster_id, self});
    const bool sent = co_await conn->write(hello);
    conn->disarm();
    if (!sent) {
      conn->close();
      co_return nullptr;
    }
    co_return conn;
  }

  awaitable<void> verify_member(std::string address, raft::NodeId id,
                                std::function<void(Status)> done) {
    std::shared_ptr<Connection> conn = co_await connect(address);
    if (!conn) {
      done(Status::unavailable("nothing answered with the cluster's TLS at " + address));
      co_return;
    }
    if (conn->tls() && !is_node_certificate(conn->identity(), id, opt.cluster_id)) {
      conn->close();
      done(Status::invalid_argument("the node at " + address + " presents a certificate (" +
                                    conn->identity().describe() +
                                    ") that is not this node's certificate of the cluster"));
      co_return;
    }
    // A hello, so that the node sees a peer that said who it is rather than a refused stranger.
    const std::string hello = encode_hello(Hello{opt.cluster_id, self});
    co_await conn->write(hello);
    conn->close();
    done(Status());
  }

  // On an outbound connection: what the peer sends back (a node being joined answers here).
  awaitable<void> read_answers(std::shared_ptr<Connection> conn, raft::NodeId peer) {
    FrameReader reader(opt.max_frame_bytes, &frame_budget);
    std::vector<Frame> frames;
    const Sender sender{peer, conn->tls()};
    while (co_await read_frames(*conn, reader, frames, Idle::kForever)) {
      for (Frame& f : frames) {
        auto m = f.type == FrameType::kMessage
                     ? raft::decode_message(f.payload)
                     : Result<raft::Message>(Status::invalid_argument("only messages come back"));
        if (!m.ok()) {
          note_refused(*conn, m.status().to_string());
          conn->close();
          co_return;
        }
        deliver(std::move(m).value(), sender);
      }
      frames.clear();
    }
    conn->close();
  }

  // Keeps one connection to a peer and drains its queue into it, reconnecting with backoff.
  awaitable<void> peer_loop(std::shared_ptr<Peer> peer) {
    auto backoff = 50ms;
    while (!peer->removed) {
      std::shared_ptr<Connection> conn = co_await dial(peer->address, peer->id);
      if (conn) {
        backoff = 50ms;
        asio::co_spawn(io, read_answers(conn, peer->id), asio::detached);
        while (!peer->removed && conn->is_open()) {
          if (peer->queue.empty()) {
            boost::system::error_code ec;
            peer->wake.expires_at(asio::steady_timer::time_point::max());
            co_await peer->wake.async_wait(asio::redirect_error(use_awaitable, ec));
            continue;
          }
          std::string batch;
          while (!peer->queue.empty() && batch.size() < (1u << 20)) {
            batch += peer->queue.front();
            peer->queued_bytes -= peer->queue.front().size();
            peer->queue.pop_front();
          }
          if (!co_await conn->write(batch))
            break;
        }
        conn->close();
      }
      if (peer->removed)
        co_return;
      report_unreachable(peer->id);
      // Messages queued for a dead connection are stale by the time it is back: Raft resends.
      peer->queue.clear();
      peer->queued_bytes = 0;
      asio::steady_timer pause(io, backoff);
      boost::system::error_code ec;
      co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, 2s);
    }
  }

  void report_unreachable(raft::NodeId id) {
    with_receiver([id](Receiver& r) { r.unreachable(id); });
  }

  // Queues a frame for `to`: its peer connection, or the connection it last reached us on.
  void enqueue(raft::NodeId to, std::string bytes) {
    if (auto it = peers.find(to); it != peers.end()) {
      Peer& peer = *it->second;
      if (peer.queued_bytes + bytes.size() > opt.max_queue_bytes)
        return report_unreachable(to);
      peer.queued_bytes += bytes.size();
      peer.queue.push_back(std::move(bytes));
      peer.wake.cancel();
      return;
    }
    auto in = inbound.find(to);
    std::shared_ptr<Connection> conn = in == inbound.end() ? nullptr : in->second.lock();
    if (!conn || !conn->is_open() || conn->queued_bytes + bytes.size() > opt.max_queue_bytes)
      return report_unreachable(to);
    conn->queued_bytes += bytes.size();
    conn->queue.push_back(std::move(bytes));
    if (!conn->writing) {
      conn->writing = true;
      asio::co_spawn(io, drain(conn), asio::detached);
    } else {
      conn->wake.cancel();
    }
  }

  awaitable<void> stream_snapshot(std::string address, raft::Message m, storage::SnapshotInfo info,
                                  std::function<void(bool)> done) {
    std::shared_ptr<Connection> conn = co_await dial(address, m.to);
    bool ok = conn != nullptr;
    if (ok) {
      // A peer that vanishes mid-stream must not leave the sender waiting for an ack forever:
      // the whole transfer gets io_timeout plus one second per 10 MB.
      conn->arm(opt.io_timeout + std::chrono::milliseconds(info.bytes() / 10000));
      const std::string begin =
          encode_frame(FrameType::kSnapshotBegin, storage::encode_snapshot_info(info));
      ok = co_await conn->write(begin);
    }
    for (const storage::SnapshotFile& f : info.files) {
      if (!ok)
        break;
      ok = co_await stream_file(*conn, info.dir, f.name);
    }
    if (ok) {
      const std::string end = encode_frame(FrameType::kSnapshotEnd, raft::encode_message(m));
      ok = co_await conn->write(end);
    }
    if (ok) {
      FrameReader reader(opt.max_frame_bytes, &frame_budget);
      std::vector<Frame> frames;
      ok = co_await read_frames(*conn, reader, frames, Idle::kArmed);
      ok = ok && frames.front().type == FrameType::kSnapshotAck && frames.front().payload == "\1";
    }
    if (conn)
      conn->close();
    done(ok);
  }

  awaitable<bool> stream_file(Connection& conn, const std::string& dir, const std::string& name) {
    auto file = std::make_shared<std::unique_ptr<storage::SequentialFile>>();
    auto piece = std::make_shared<std::string>();
    auto open_file = [env = opt.env, file, path = dir + "/" + name] {
      auto r = env->open_for_read(path);
      if (r.ok())
        *file = std::move(r).value();
      return r.status();
    };
    Status opened = co_await on_file_thread(std::move(open_file));
    if (!opened.ok())
      co_return false;
    for (;;) {
      auto read_piece = [file, piece, n = opt.chunk_bytes] {
        return (*file)->read(n, piece.get());
      };
      Status read = co_await on_file_thread(std::move(read_piece));
      if (!read.ok())
        co_return false;
      if (piece->empty())
        co_return true;
      std::string payload;
      put_bytes(&payload, name);
      put_bytes(&payload, *piece);
      const std::string chunk = encode_frame(FrameType::kSnapshotChunk, payload);
      if (!co_await conn.write(chunk))
        co_return false;
    }
  }

  TcpTransportOptions opt;
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
};

TcpTransport::TcpTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TcpTransport::~TcpTransport() {
  asio::post(impl_->io, [impl = impl_.get()] {
    boost::system::error_code ec;
    impl->acceptor.close(ec);
    for (auto& [id, peer] : impl->peers) {
      peer->removed = true;
      peer->wake.cancel();
    }
  });
}

Result<std::unique_ptr<TcpTransport>> TcpTransport::start(const TcpTransportOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  if (Status s = net::listen_on(impl->acceptor, options.listen, "raft"); !s.ok())
    return s;
  asio::co_spawn(impl->io, impl->accept_loop(), asio::detached);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    auto guard = asio::make_work_guard(raw->io);
    raw->io.run();
  });
  return std::unique_ptr<TcpTransport>(new TcpTransport(std::move(impl)));
}

uint16_t TcpTransport::port() const {
  boost::system::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

uint64_t TcpTransport::refused_connections() const {
  return impl_->refused.load();
}

size_t TcpTransport::inbound_connections() const {
  return impl_->inbound_open.load();
}

void TcpTransport::set_receiver(raft::NodeId self, Receiver* receiver) {
  std::lock_guard lock(impl_->receiver_mu);
  impl_->self = self;
  impl_->receiver = receiver;
}

void TcpTransport::close(raft::NodeId) {
  std::lock_guard lock(impl_->receiver_mu);
  impl_->receiver = nullptr;
}

void TcpTransport::update_peers(const std::map<raft::NodeId, std::string>& raft_addresses) {
  asio::post(impl_->io, [impl = impl_.get(), raft_addresses] {
    for (auto it = impl->peers.begin(); it != impl->peers.end();) {
      auto found = raft_addresses.find(it->first);
      if (found == raft_addresses.end() || found->second != it->second->address) {
        it->second->removed = true;
        it->second->wake.cancel();
        it = impl->peers.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& [id, address] : raft_addresses) {
      if (id == impl->self || impl->peers.count(id))
        continue;
      auto peer = std::make_shared<Impl::Peer>(impl->io, id, address);
      impl->peers[id] = peer;
      asio::co_spawn(impl->io, impl->peer_loop(peer), asio::detached);
    }
  });
}

void TcpTransport::send(std::vector<raft::Message> messages) {
  std::vector<std::pair<raft::NodeId, std::string>> frames;
  frames.reserve(messages.size());
  for (const raft::Message& m : messages)
    frames.emplace_back(m.to, encode_frame(FrameType::kMessage, raft::encode_message(m)));
  asio::post(impl_->io, [impl = impl_.get(), frames = std::move(frames)]() mutable {
    for (auto& [to, bytes] : frames)
      impl->enqueue(to, std::move(bytes));
  });
}

void TcpTransport::verify_member(const std::string& address, raft::NodeId id,
                                 std::function<void(Status)> done) {
  asio::co_spawn(impl_->io, impl_->verify_member(address, id, std::move(done)), asio::detached);
}

void TcpTransport::send_snapshot(raft::Message m, storage::SnapshotInfo info,
                                 std::function<void(bool)> done) {
  asio::post(impl_->io, [impl = impl_.get(), m = std::move(m), info = std::move(info),
                         done = std::move(done)]() mutable {
    auto it = impl->peers.find(m.to);
    if (it == impl->peers.end()) {
      done(false);
      return;
    }
    asio::co_spawn(
        impl->io,
        impl->stream_snapshot(it->second->address, std::move(m), std::move(info), std::move(done)),
        asio::detached);
  });
}

}  // namespace raftnginx::transport
