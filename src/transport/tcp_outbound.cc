// Connections to peers: dialled and proven (TLS, hello), fed from per-peer queues with backoff
// on failure, and snapshots streamed file by file.
#include "transport/tcp_transport_impl.h"

namespace raftnginx::transport {
namespace {

// Up to a megabyte of queued frames, taken off the queue: one write for many small messages.
std::string take_batch(std::deque<std::string>& queue, uint64_t& queued_bytes) {
  std::string batch;
  while (!queue.empty() && batch.size() < (1u << 20)) {
    batch += queue.front();
    queued_bytes -= queue.front().size();
    queue.pop_front();
  }
  return batch;
}

}  // namespace

awaitable<void> TcpTransport::Impl::drain(std::shared_ptr<Connection> conn) {
  while (conn->is_open()) {
    if (conn->queue.empty()) {
      boost::system::error_code ec;
      conn->wake.expires_at(asio::steady_timer::time_point::max());
      co_await conn->wake.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    const std::string batch = take_batch(conn->queue, conn->queued_bytes);
    if (!co_await conn->write(batch))
      conn->close();
  }
  conn->writing = false;
}

awaitable<std::shared_ptr<Connection>> TcpTransport::Impl::connect(const std::string& address) {
  auto parsed = net::parse_address(address);
  if (!parsed.ok())
    co_return nullptr;
  boost::system::error_code ec;
  tcp::resolver resolver(io);
  const std::string port = std::to_string(parsed->port);
  auto endpoints =
      co_await resolver.async_resolve(parsed->host, port, asio::redirect_error(use_awaitable, ec));
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

awaitable<std::shared_ptr<Connection>> TcpTransport::Impl::dial(const std::string& address,
                                                                raft::NodeId peer) {
  std::shared_ptr<Connection> conn = co_await connect(address);
  if (!conn)
    co_return nullptr;
  if (conn->tls() && !is_node_certificate(conn->identity(), peer, opt.cluster_name)) {
    spdlog::warn("raft port: {} presented a certificate ({}) that is not the member's", address,
                 conn->identity().describe());
    conn->close();
    co_return nullptr;
  }
  const std::string hello = hello_from_self();
  const bool sent = co_await conn->write(hello);
  conn->disarm();
  if (!sent) {
    conn->close();
    co_return nullptr;
  }
  co_return conn;
}

awaitable<void> TcpTransport::Impl::verify_member(std::string address, raft::NodeId id,
                                                  std::function<void(Status)> done) {
  std::shared_ptr<Connection> conn = co_await connect(address);
  if (!conn) {
    done(Status::unavailable("nothing answered with the cluster's TLS at " + address));
    co_return;
  }
  if (conn->tls() && !is_node_certificate(conn->identity(), id, opt.cluster_name)) {
    conn->close();
    done(Status::invalid_argument("the node at " + address + " presents a certificate (" +
                                  conn->identity().describe() +
                                  ") that is not this node's certificate of the cluster"));
    co_return;
  }
  // A hello, so that the node sees a peer that said who it is rather than a refused stranger.
  const std::string hello = hello_from_self();
  co_await conn->write(hello);
  conn->close();
  done(Status());
}

awaitable<void> TcpTransport::Impl::read_answers(std::shared_ptr<Connection> conn,
                                                 raft::NodeId peer) {
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

awaitable<void> TcpTransport::Impl::peer_loop(std::shared_ptr<Peer> peer) {
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
        const std::string batch = take_batch(peer->queue, peer->queued_bytes);
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

void TcpTransport::Impl::report_unreachable(raft::NodeId id) {
  with_receiver([id](Receiver& r) { r.unreachable(id); });
}

void TcpTransport::Impl::enqueue(raft::NodeId to, std::string bytes) {
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

awaitable<void> TcpTransport::Impl::stream_snapshot(std::string address, raft::Message m,
                                                    storage::SnapshotInfo info,
                                                    std::function<void(bool)> done) {
  std::map<std::string, uint64_t> held;
  const auto began = std::chrono::steady_clock::now();
  const uint64_t sent_before = snapshot_bytes_sent;
  std::shared_ptr<Connection> conn = co_await open_snapshot_stream(address, m.to, info, &held);
  bool ok = conn != nullptr;
  const char* stage = "opening the stream";
  uint64_t resumed = 0;
  for (const auto& [name, bytes] : held)
    resumed += bytes;
  if (ok && resumed > 0) {
    spdlog::info("raft port: snapshot {} to node {} resumes at {} of {} bytes", info.meta.index,
                 m.to, resumed, info.bytes());
    snapshot_bytes_resumed += resumed;
  }
  if (ok)
    stage = "streaming the files";
  for (const storage::SnapshotFile& f : info.files) {
    if (!ok)
      break;
    ok = co_await stream_file(*conn, info.dir, f.name, held[f.name]);
  }
  if (ok) {
    stage = "waiting for the receiver to take it";
    // The receiver syncs the files before it answers: one second more per 10 MB.
    conn->arm(opt.io_timeout + std::chrono::milliseconds(info.bytes() / 10000));
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
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - began)
                      .count();
  if (ok) {
    spdlog::info("raft port: snapshot {} sent to node {} ({} bytes streamed in {} ms)",
                 info.meta.index, m.to, snapshot_bytes_sent - sent_before, ms);
  } else {
    spdlog::warn("raft port: snapshot {} to node {} failed after {} ms, {}", info.meta.index, m.to,
                 ms, stage);
  }
  done(ok);
}

awaitable<std::shared_ptr<Connection>> TcpTransport::Impl::open_snapshot_stream(
    const std::string& address, raft::NodeId peer, const storage::SnapshotInfo& info,
    std::map<std::string, uint64_t>* held) {
  const std::string announced = storage::encode_snapshot_info(info);
  std::shared_ptr<Connection> conn = co_await dial(address, peer);
  if (!conn)
    co_return nullptr;
  conn->arm(opt.io_timeout);
  const std::string offer = encode_frame(FrameType::kSnapshotOffer, announced);
  if (!co_await conn->write(offer)) {
    conn->close();
    co_return nullptr;
  }
  FrameReader reader(opt.max_frame_bytes, &frame_budget);
  std::vector<Frame> frames;
  const bool answered = co_await read_frames(*conn, reader, frames, Idle::kArmed);
  if (answered) {
    auto answer = frames.front().type == FrameType::kSnapshotResume
                      ? decode_snapshot_resume(frames.front().payload)
                      : Result<SnapshotResume>(Status::invalid_argument("not a resume answer"));
    bool fits = answer.ok() && answer->accepted;
    for (const auto& [name, bytes] : fits ? answer->held : std::map<std::string, uint64_t>()) {
      auto file = std::find_if(info.files.begin(), info.files.end(),
                               [&name = name](const auto& f) { return f.name == name; });
      fits = fits && file != info.files.end() && bytes <= file->size;
    }
    if (!fits) {
      conn->close();
      co_return nullptr;
    }
    offer_speakers.insert(peer);
    *held = std::move(answer->held);
    conn->disarm();
    co_return conn;
  }
  conn->close();
  // A receiver of an earlier release closes the connection at a frame type it does not know. A
  // peer that answered an offer before only lost this one (a broken link, a timeout): a plain
  // stream would not resume, so it gets the next offer instead.
  if (offer_speakers.count(peer))
    co_return nullptr;
  conn = co_await dial(address, peer);
  if (!conn)
    co_return nullptr;
  const std::string begin = encode_frame(FrameType::kSnapshotBegin, announced);
  if (!co_await conn->write(begin)) {
    conn->close();
    co_return nullptr;
  }
  co_return conn;
}

awaitable<bool> TcpTransport::Impl::stream_file(Connection& conn, const std::string& dir,
                                                const std::string& name, uint64_t from) {
  auto file = std::make_shared<std::unique_ptr<storage::SequentialFile>>();
  auto piece = std::make_shared<std::string>();
  auto open_file = [env = opt.env, file, from, path = dir + "/" + name]() -> Status {
    auto r = env->open_for_read(path);
    if (!r.ok())
      return r.status();
    *file = std::move(r).value();
    return (*file)->skip(from);
  };
  Status opened = co_await on_file_thread(std::move(open_file));
  if (!opened.ok())
    co_return false;
  for (;;) {
    auto read_piece = [file, piece, n = opt.chunk_bytes] { return (*file)->read(n, piece.get()); };
    Status read = co_await on_file_thread(std::move(read_piece));
    if (!read.ok())
      co_return false;
    if (piece->empty())
      co_return true;
    std::string payload;
    put_bytes(&payload, name);
    put_bytes(&payload, *piece);
    const std::string chunk = encode_frame(FrameType::kSnapshotChunk, payload);
    // Over a thin link a large snapshot takes long: the deadline is for progress, per chunk.
    conn.arm(opt.io_timeout);
    const bool written = co_await conn.write(chunk);
    conn.disarm();
    if (!written)
      co_return false;
    snapshot_bytes_sent += piece->size();
  }
}

}  // namespace raftnginx::transport
