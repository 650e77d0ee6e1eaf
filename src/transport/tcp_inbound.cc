// The raft port: who may connect and stay, the hello that binds a connection to a member, and
// what a member sends on it (messages, or one snapshot stream staged through the Env).
#include "transport/tcp_transport_impl.h"

namespace raftnginx::transport {

awaitable<void> TcpTransport::Impl::accept_loop() {
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

bool TcpTransport::Impl::make_room(const std::string& address) {
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

void TcpTransport::Impl::release_inbound(const Connection& conn) {
  accepted.remove_if([&conn](const std::weak_ptr<Connection>& weak) {
    std::shared_ptr<Connection> c = weak.lock();
    return !c || c.get() == &conn;
  });
  --inbound_count;
  inbound_open = inbound_count;
  if (auto it = per_address.find(conn.remote()); it != per_address.end() && --it->second == 0)
    per_address.erase(it);
}

awaitable<std::optional<Sender>> TcpTransport::Impl::greet(Connection& conn, FrameReader& reader,
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
  } else if (const std::string ours = cluster_id(); !ours.empty() && hello->cluster_id != ours) {
    why = "cluster '" + printable(hello->cluster_id, 64) + "' (this cluster is '" + ours + "')";
  } else if (hello->from == self) {
    why = "a hello that claims to be this node";
  } else if (conn.tls() && !is_node_certificate(conn.identity(), hello->from, opt.cluster_name)) {
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

awaitable<void> TcpTransport::Impl::serve(std::shared_ptr<Connection> conn) {
  FrameReader reader(opt.max_frame_bytes, &frame_budget);
  std::vector<Frame> frames;
  std::optional<Sender> sender = co_await greet(*conn, reader, frames);
  std::optional<Staging> staging;
  if (sender) {
    bool open = true;
    bool broken = false;  // the connection broke or went quiet, rather than a frame ending it
    bool carries_messages = false;
    while (open) {
      for (Frame& f : frames) {
        // Answers to a peer that is no member go back on the connection its messages came in
        // on; never on a snapshot stream's, whose sender reads only the stream's answers.
        if (f.type == FrameType::kMessage && !carries_messages) {
          inbound[sender->id] = conn;
          carries_messages = true;
        }
        open = co_await on_frame(*conn, *sender, f, staging);
        if (!open)
          break;
      }
      frames.clear();
      broken = open && !co_await read_frames(*conn, reader, frames, Idle::kTimeout);
      open = open && !broken;
    }
    if (auto it = inbound.find(sender->id); it != inbound.end() && it->second.lock() == conn)
      inbound.erase(it);
    if (staging)
      end_stream(std::move(*staging), broken);
  }
  conn->close();
  release_inbound(*conn);
}

awaitable<bool> TcpTransport::Impl::on_frame(Connection& conn, Sender sender, Frame& f,
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
      co_return begin_snapshot(conn, sender, f.payload, false, staging);
    case FrameType::kSnapshotOffer: {
      const bool begun = begin_snapshot(conn, sender, f.payload, true, staging);
      const std::string answer = resume_answer(begun ? staging : std::nullopt);
      // An answer that cannot be written means a broken connection, which the next read
      // reports: the stream is then kept, not removed.
      co_await conn.write(answer);
      co_return begun;
    }
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

void TcpTransport::Impl::deliver(raft::Message m, Sender sender) {
  with_receiver([&](Receiver& r) { r.receive(std::move(m), sender); });
}

bool TcpTransport::Impl::begin_snapshot(Connection& conn, Sender sender, const std::string& payload,
                                        bool offered, std::optional<Staging>& staging) {
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
  // An offer of the snapshot kept resumes it; another offer replaces it. A plain stream leaves
  // it alone: it does not resume, and the offer it stands in for may follow.
  const bool resumes = offered && kept && kept->announced == payload;
  if (offered && kept && !resumes)
    drop_kept();
  if (resumes)
    with_receiver([&](Receiver& r) { r.abort_snapshot_receive(*dir); });
  // Refused at once rather than when the disk fills up: a leader retries later.
  const uint64_t needed = resumes ? info->bytes() - kept->held() : info->bytes();
  auto free = opt.env->free_bytes(resumes ? kept->dir : *dir);
  if (!free.ok() || needed > *free) {
    note_refused(conn, "snapshot stream needing " + std::to_string(needed) + " bytes: " +
                           (free.ok() ? std::to_string(*free) + " bytes free on the disk"
                                      : free.status().message()));
    if (!resumes)
      with_receiver([&](Receiver& r) { r.abort_snapshot_receive(*dir); });
    return false;
  }
  ++snapshot_streams;
  if (resumes) {
    kept_expiry.cancel();
    staging = std::move(kept);
    kept.reset();
    spdlog::info("raft port: snapshot {} from node {} resumes at {} of {} bytes",
                 staging->info.meta.index, sender.id, staging->held(), staging->info.bytes());
    return true;
  }
  staging.emplace();
  staging->dir = *dir;
  staging->info = std::move(info).value();
  staging->announced = payload;
  staging->resumable = offered;
  for (const storage::SnapshotFile& file : staging->info.files)
    staging->remaining[file.name] = file.size;
  return true;
}

std::string TcpTransport::Impl::resume_answer(const std::optional<Staging>& staging) {
  SnapshotResume answer;
  answer.accepted = staging.has_value();
  if (staging) {
    for (const storage::SnapshotFile& file : staging->info.files) {
      const uint64_t held = file.size - staging->remaining.at(file.name);
      if (held > 0)
        answer.held[file.name] = held;
    }
  }
  return encode_snapshot_resume(answer);
}

void TcpTransport::Impl::end_stream(Staging staging, bool broken) {
  --snapshot_streams;
  const bool keep =
      broken && staging.resumable &&
      !(kept && kept->announced == staging.announced && kept->held() >= staging.held());
  if (!keep) {
    with_receiver([&](Receiver& r) { r.abort_snapshot_receive(staging.dir); });
    return;
  }
  drop_kept();
  spdlog::info("raft port: snapshot {} broke off; the {} bytes received are kept to resume",
               staging.info.meta.index, staging.held());
  kept = std::move(staging);
  // The generation tells this wait from one for an earlier kept stream whose handler was
  // already queued when it was replaced.
  kept_expiry.expires_after(defaults::kKeepBrokenSnapshotStream);
  kept_expiry.async_wait([this, generation = ++kept_generation](boost::system::error_code ec) {
    if (!ec && generation == kept_generation)
      drop_kept();
  });
}

void TcpTransport::Impl::drop_kept() {
  if (!kept)
    return;
  kept_expiry.cancel();
  const std::string dir = kept->dir;
  kept.reset();
  with_receiver([&](Receiver& r) { r.abort_snapshot_receive(dir); });
}

awaitable<bool> TcpTransport::Impl::write_chunk(Connection& conn, const std::string& payload,
                                                std::optional<Staging>& staging) {
  Reader r(payload);
  const std::string name(r.bytes());
  const std::string_view bytes = r.bytes();
  auto room = staging ? staging->remaining.find(name) : std::map<std::string, uint64_t>::iterator();
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

awaitable<bool> TcpTransport::Impl::end_snapshot(Connection& conn, Sender sender,
                                                 const std::string& payload,
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
      taken = r.finish_snapshot_receive(std::move(m).value(), sender, staging->dir, staging->info);
    });
  }
  if (!taken.ok()) {
    spdlog::warn("raft port: snapshot {} refused: {}", staging->info.meta.index, taken.to_string());
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

}  // namespace raftnginx::transport
