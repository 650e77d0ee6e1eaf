#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#include "transport/tcp_transport.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <deque>
#include <mutex>
#include <thread>

#include "net/address.h"
#include "net/listen.h"
#include "raft/encoding.h"
#include "util/coding.h"

namespace raftnginx::transport {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace std::chrono_literals;

constexpr char kMagic[4] = {'R', 'N', 'G', 'X'};
constexpr uint8_t kProtocolVersion = 1;
enum FrameType : uint8_t {
  kHello = 1,
  kMessageFrame = 2,
  kSnapshotBegin = 3,
  kSnapshotChunk = 4,
  kSnapshotEnd = 5,
  kSnapshotAck = 6,
};

std::string frame(uint8_t type, std::string_view payload) {
  std::string out;
  out.reserve(5 + payload.size());
  put_u32(&out, static_cast<uint32_t>(1 + payload.size()));
  put_u8(&out, type);
  out.append(payload);
  return out;
}

std::string hello_frame(const std::string& cluster_id, raft::NodeId from,
                        const std::string& advertise) {
  std::string payload(kMagic, 4);
  put_u8(&payload, kProtocolVersion);
  put_bytes(&payload, cluster_id);
  put_u64(&payload, from);
  put_bytes(&payload, advertise);
  return frame(kHello, payload);
}

struct Frame {
  uint8_t type = 0;
  std::string payload;
};

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

  void report_unreachable(raft::NodeId id) {
    std::lock_guard lock(receiver_mu);
    if (receiver)
      receiver->unreachable(id);
  }

  struct Peer {
    Peer(asio::io_context& io, raft::NodeId peer_id, std::string addr)
        : id(peer_id), address(std::move(addr)), wake(io) {}
    raft::NodeId id;
    std::string address;
    // Learned from a hello rather than configured: kept until membership names this id.
    bool learned = false;
    std::deque<std::string> queue;
    uint64_t queued_bytes = 0;
    asio::steady_timer wake;
    bool removed = false;
  };

  // Reads one frame; false on a closed connection, an error or a frame over the limit.
  awaitable<bool> read_frame(tcp::socket& sock, Frame& out) {
    boost::system::error_code ec;
    char header[4];
    co_await asio::async_read(sock, asio::buffer(header, 4),
                              asio::redirect_error(use_awaitable, ec));
    if (ec)
      co_return false;
    const uint32_t length = decode_u32(header);
    if (length == 0 || length > opt.max_frame_bytes) {
      note_refused(sock, "frame of " + std::to_string(length) + " bytes");
      sock.close(ec);
      co_return false;
    }
    out.payload.resize(length);
    co_await asio::async_read(sock, asio::buffer(out.payload),
                              asio::redirect_error(use_awaitable, ec));
    if (ec)
      co_return false;
    out.type = static_cast<uint8_t>(out.payload[0]);
    out.payload.erase(0, 1);
    co_return true;
  }

  awaitable<bool> write_all(tcp::socket& sock, const std::string& bytes) {
    boost::system::error_code ec;
    co_await asio::async_write(sock, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
    co_return !ec;
  }

  void note_refused(tcp::socket& sock, const std::string& why) {
    ++refused;
    boost::system::error_code ec;
    const auto remote = sock.remote_endpoint(ec);
    spdlog::warn("raft port: refusing connection from {}: {}",
                 ec ? std::string("?") : remote.address().to_string(), why);
  }

  // Checks a hello; on success learns the sender's address if it is a peer we do not know.
  std::string check_hello(const Frame& f) {
    if (f.type != kHello || f.payload.size() < 5 || f.payload.compare(0, 4, kMagic, 4) != 0)
      return "not the raft-nginx protocol";
    Reader r(std::string_view(f.payload).substr(4));
    const uint8_t version = r.u8();
    if (r.ok() && version != kProtocolVersion)
      return "protocol version " + std::to_string(version);
    const std::string_view cluster = r.bytes();
    const raft::NodeId from = r.u64();
    const std::string address(r.bytes());
    if (!r.done())
      return "malformed hello";
    if (cluster != opt.cluster_id)
      return "cluster id '" + std::string(cluster) + "' (this cluster is '" + opt.cluster_id + "')";
    if (from != raft::kNoNode && from != self && net::valid_address(address) &&
        !peers.count(from)) {
      auto peer = std::make_shared<Peer>(io, from, address);
      peer->learned = true;
      peers[from] = peer;
      asio::co_spawn(io, peer_loop(peer), asio::detached);
    }
    return {};
  }

  awaitable<void> accept_loop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket sock = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (!acceptor.is_open())
          co_return;
        continue;
      }
      asio::co_spawn(io, serve(std::move(sock)), asio::detached);
    }
  }

  // One inbound connection: a hello, then messages or one snapshot stream.
  awaitable<void> serve(tcp::socket sock) {
    asio::steady_timer hello_deadline(io);
    hello_deadline.expires_after(5s);
    hello_deadline.async_wait([&sock](boost::system::error_code ec) {
      if (!ec)
        sock.close(ec);
    });
    Frame f;
    const bool got_hello = co_await read_frame(sock, f);
    hello_deadline.cancel();
    if (!got_hello) {
      if (sock.is_open())
        note_refused(sock, "no hello");
      co_return;
    }
    if (std::string why = check_hello(f); !why.empty()) {
      note_refused(sock, why);
      co_return;
    }
    std::string staged_dir;
    storage::SnapshotInfo snapshot;
    // Touched only on the file thread (each use waits for the one before).
    std::shared_ptr<std::unique_ptr<storage::WritableFile>> file =
        std::make_shared<std::unique_ptr<storage::WritableFile>>();
    std::string file_name;
    for (;;) {
      if (!co_await read_frame(sock, f))
        co_return;
      if (f.type == kMessageFrame) {
        auto m = raft::decode_message(f.payload);
        if (!m.ok()) {
          note_refused(sock, m.status().to_string());
          co_return;
        }
        std::lock_guard lock(receiver_mu);
        if (receiver)
          receiver->receive(std::move(m).value());
      } else if (f.type == kSnapshotBegin) {
        auto info = storage::decode_snapshot_info(f.payload);
        Result<std::string> dir = Status::unavailable("node closed");
        {
          std::lock_guard lock(receiver_mu);
          if (receiver)
            dir = receiver->begin_snapshot_receive();
        }
        if (!info.ok() || !dir.ok())
          co_return;
        snapshot = std::move(info).value();
        staged_dir = *dir;
      } else if (f.type == kSnapshotChunk) {
        Reader r(f.payload);
        const std::string name(r.bytes());
        const std::string_view bytes = r.bytes();
        if (!r.done() || staged_dir.empty() || name.empty() ||
            name.find('/') != std::string::npos) {
          note_refused(sock, "malformed snapshot chunk");
          co_return;
        }
        const bool new_file = name != file_name;
        file_name = name;
        auto write_chunk = [env = opt.env, file, new_file, path = staged_dir + "/" + name,
                            bytes = std::string(bytes)]() -> Status {
          if (new_file) {
            uint64_t size = 0;
            auto opened = env->open_for_append(path, &size);
            if (!opened.ok())
              return opened.status();
            *file = std::move(opened).value();
          }
          return (*file)->append(bytes);
        };
        Status written = co_await on_file_thread(std::move(write_chunk));
        if (!written.ok())
          co_return;
      } else if (f.type == kSnapshotEnd) {
        auto m = raft::decode_message(f.payload);
        bool accepted = false;
        auto sync_file = [file]() -> Status {
          Status s = *file ? (*file)->sync() : Status();
          file->reset();
          return s;
        };
        const Status synced = co_await on_file_thread(std::move(sync_file));
        if (m.ok() && !staged_dir.empty() && synced.ok()) {
          std::lock_guard lock(receiver_mu);
          if (receiver) {
            Status s =
                receiver->finish_snapshot_receive(std::move(m).value(), staged_dir, snapshot);
            accepted = s.ok();
            if (!s.ok())
              spdlog::warn("raft port: snapshot {} refused: {}", snapshot.meta.index,
                           s.to_string());
          }
        }
        const std::string ack = frame(kSnapshotAck, std::string(1, accepted ? '\1' : '\0'));
        co_await write_all(sock, ack);
        co_return;
      } else {
        note_refused(sock, "unknown frame type " + std::to_string(f.type));
        co_return;
      }
    }
  }

  awaitable<bool> connect(tcp::socket& sock, const std::string& address) {
    auto parsed = net::parse_address(address);
    if (!parsed.ok())
      co_return false;
    boost::system::error_code ec;
    tcp::resolver resolver(io);
    auto endpoints = co_await resolver.async_resolve(parsed->host, std::to_string(parsed->port),
                                                     asio::redirect_error(use_awaitable, ec));
    if (ec)
      co_return false;
    asio::steady_timer deadline(io);
    deadline.expires_after(2s);
    deadline.async_wait([&sock](boost::system::error_code e) {
      if (!e)
        sock.close(e);
    });
    co_await asio::async_connect(sock, endpoints, asio::redirect_error(use_awaitable, ec));
    deadline.cancel();
    if (ec || !sock.is_open())
      co_return false;
    sock.set_option(tcp::no_delay(true), ec);
    sock.set_option(asio::socket_base::keep_alive(true), ec);
    const std::string hello = hello_frame(opt.cluster_id, self, opt.advertise);
    const bool sent = co_await write_all(sock, hello);
    co_return sent;
  }

  // Keeps one connection to a peer and drains its queue into it, reconnecting with backoff.
  awaitable<void> peer_loop(std::shared_ptr<Peer> peer) {
    auto backoff = 50ms;
    while (!peer->removed) {
      tcp::socket sock(io);
      if (co_await connect(sock, peer->address)) {
        backoff = 50ms;
        for (;;) {
          if (peer->removed)
            co_return;
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
          if (!co_await write_all(sock, batch))
            break;
        }
      }
      report_unreachable(peer->id);
      // Messages queued for a dead connection are stale by the time it is back: Raft resends.
      peer->queue.clear();
      peer->queued_bytes = 0;
      asio::steady_timer pause(io);
      pause.expires_after(backoff);
      boost::system::error_code ec;
      co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, 2s);
    }
  }

  awaitable<void> stream_snapshot(std::string address, raft::Message m, storage::SnapshotInfo info,
                                  std::function<void(bool)> done) {
    tcp::socket sock(io);
    // A peer that vanishes mid-stream must not leave the sender waiting for an ack forever:
    // the whole transfer gets 30 s plus one second per 10 MB.
    asio::steady_timer deadline(io);
    deadline.expires_after(30s + std::chrono::milliseconds(info.bytes() / 10000));
    deadline.async_wait([&sock](boost::system::error_code ec) {
      if (!ec)
        sock.close(ec);
    });
    bool ok = co_await connect(sock, address);
    const std::string begin = frame(kSnapshotBegin, storage::encode_snapshot_info(info));
    ok = ok && co_await write_all(sock, begin);
    for (const storage::SnapshotFile& f : info.files) {
      if (!ok)
        break;
      auto file = std::make_shared<std::unique_ptr<storage::SequentialFile>>();
      auto piece = std::make_shared<std::string>();
      auto open_file = [env = opt.env, file, path = info.dir + "/" + f.name] {
        auto r = env->open_for_read(path);
        if (r.ok())
          *file = std::move(r).value();
        return r.status();
      };
      Status opened = co_await on_file_thread(std::move(open_file));
      ok = opened.ok();
      while (ok) {
        auto read_piece = [file, piece, n = opt.chunk_bytes] {
          return (*file)->read(n, piece.get());
        };
        Status read = co_await on_file_thread(std::move(read_piece));
        ok = read.ok();
        if (!ok || piece->empty())
          break;
        std::string payload;
        put_bytes(&payload, f.name);
        put_bytes(&payload, *piece);
        const std::string chunk = frame(kSnapshotChunk, payload);
        ok = co_await write_all(sock, chunk);
      }
    }
    const std::string end = frame(kSnapshotEnd, raft::encode_message(m));
    ok = ok && co_await write_all(sock, end);
    Frame ack;
    if (ok)
      ok = co_await read_frame(sock, ack);
    ok = ok && ack.type == kSnapshotAck && ack.payload == std::string(1, '\1');
    deadline.cancel();
    done(ok);
  }

  TcpTransportOptions opt;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread thread;
  asio::thread_pool file_thread{1};
  std::atomic<uint64_t> refused{0};
  std::atomic<raft::NodeId> self{raft::kNoNode};
  std::mutex receiver_mu;
  Receiver* receiver = nullptr;
  // I/O thread only.
  std::map<raft::NodeId, std::shared_ptr<Peer>> peers;
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
  if (impl->opt.advertise.empty()) {
    net::HostPort bound = *net::parse_address(options.listen, net::Port::kZeroAllowed);
    bound.port = impl->acceptor.local_endpoint().port();
    impl->opt.advertise = bound.to_string();
  }
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
      const bool unnamed = found == raft_addresses.end();
      if (unnamed ? !it->second->learned : found->second != it->second->address) {
        it->second->removed = true;
        it->second->wake.cancel();
        it = impl->peers.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& [id, address] : raft_addresses) {
      if (id == impl->self)
        continue;
      if (auto known = impl->peers.find(id); known != impl->peers.end()) {
        known->second->learned = false;  // membership names it now
        continue;
      }
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
    frames.emplace_back(m.to, frame(kMessageFrame, raft::encode_message(m)));
  asio::post(impl_->io, [impl = impl_.get(), frames = std::move(frames)]() mutable {
    for (auto& [to, bytes] : frames) {
      auto it = impl->peers.find(to);
      if (it == impl->peers.end())
        continue;
      Impl::Peer& peer = *it->second;
      if (peer.queued_bytes + bytes.size() > impl->opt.max_queue_bytes) {
        impl->report_unreachable(to);  // a slow or dead peer: Raft resends what matters
        continue;
      }
      peer.queued_bytes += bytes.size();
      peer.queue.push_back(std::move(bytes));
      peer.wake.cancel();
    }
  });
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
