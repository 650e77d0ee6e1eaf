#include "transport/tcp_transport.h"

#include "transport/tcp_transport_impl.h"

namespace raftnginx::transport {

void TcpTransport::Impl::note_refused(const Connection& conn, const std::string& why) {
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

awaitable<bool> TcpTransport::Impl::read_frames(Connection& conn, FrameReader& reader,
                                                std::vector<Frame>& frames, Idle idle) {
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

uint64_t TcpTransport::snapshot_bytes_sent() const {
  return impl_->snapshot_bytes_sent.load();
}

uint64_t TcpTransport::snapshot_bytes_resumed() const {
  return impl_->snapshot_bytes_resumed.load();
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

void TcpTransport::set_cluster_id(const std::string& id) {
  std::lock_guard lock(impl_->cluster_id_mu);
  impl_->opt.cluster_id = id;
}

std::string TcpTransport::cluster_id() const {
  return impl_->cluster_id();
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
