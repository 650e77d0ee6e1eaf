// TcpTransport on loopback: messages, snapshots in chunks, garbage and strangers refused,
// reconnection after a peer restarts.
#include "transport/tcp_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>

#include "temp_dir.h"

namespace raftnginx::transport {
namespace {

using namespace std::chrono_literals;

// Collects what arrives; stages snapshots in a real snapshot store.
class Inbox final : public Receiver {
 public:
  explicit Inbox(const std::string& dir)
      : store_(std::move(storage::SnapshotStore::open(storage::Env::posix(), dir, 2)).value()) {}

  void receive(raft::Message m) override {
    std::lock_guard lock(mu_);
    messages_.push_back(std::move(m));
    cv_.notify_all();
  }
  void unreachable(raft::NodeId) override {}
  Result<std::string> begin_snapshot_receive() override {
    std::lock_guard lock(mu_);
    return store_->begin();
  }
  Status finish_snapshot_receive(raft::Message m, const std::string& staged,
                                 storage::SnapshotInfo info) override {
    const auto expected = info.files;
    std::lock_guard lock(mu_);
    auto sealed = store_->commit(staged, std::move(info), &expected);
    if (!sealed.ok())
      return sealed.status();
    messages_.push_back(std::move(m));
    cv_.notify_all();
    return Status();
  }

  // Waits for the n-th message (1-based).
  std::optional<raft::Message> wait(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return messages_.size() >= n; }))
      return std::nullopt;
    return messages_[n - 1];
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return messages_.size();
  }
  storage::SnapshotStore& store() { return *store_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<raft::Message> messages_;
  std::unique_ptr<storage::SnapshotStore> store_;
};

std::unique_ptr<TcpTransport> start(const std::string& cluster = "test", uint16_t port = 0,
                                    uint64_t chunk = 1 << 20) {
  TcpTransportOptions o;
  o.listen = "127.0.0.1:" + std::to_string(port);
  o.cluster_id = cluster;
  o.chunk_bytes = chunk;
  auto t = TcpTransport::start(o);
  EXPECT_TRUE(t.ok()) << t.status().to_string();
  return std::move(t).value();
}

raft::Message heartbeat(raft::NodeId from, raft::NodeId to, raft::Term term) {
  raft::Message m;
  m.type = raft::MessageType::kHeartbeat;
  m.from = from;
  m.to = to;
  m.term = term;
  m.commit = 7;
  m.context = "hello";
  return m;
}

std::string address(const TcpTransport& t) {
  return "127.0.0.1:" + std::to_string(t.port());
}

void send_raw(uint16_t port, const std::string& bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  // The transport refuses the connection and closes it: wait for that end of file.
  ::shutdown(fd, SHUT_WR);
  char sink[256];
  while (::read(fd, sink, sizeof sink) > 0) {
  }
  ::close(fd);
}

// Waits until `condition` holds, checking every few milliseconds; false after `timeout`.
template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST(TcpTransport, MessageArrivesIntact) {
  raftnginx::testing::TempDir tmp;
  auto a = start();
  auto b = start();
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);
  a->set_receiver(1, nullptr);
  a->update_peers({{2, address(*b)}});
  a->send({heartbeat(1, 2, 5)});
  auto got = inbox.wait(1);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->term, 5u);
  EXPECT_EQ(got->commit, 7u);
  EXPECT_EQ(got->context, "hello");
}

TEST(TcpTransport, GarbageAndOtherClustersAreRefusedAndHarmless) {
  raftnginx::testing::TempDir tmp;
  auto b = start();
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);
  send_raw(b->port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  send_raw(b->port(), std::string("\xff\xff\xff\xff garbage", 13));
  auto stranger = start("another-cluster");
  stranger->set_receiver(9, nullptr);
  stranger->update_peers({{2, address(*b)}});
  stranger->send({heartbeat(9, 2, 1)});
  EXPECT_TRUE(eventually([&] { return b->refused_connections() >= 3; }));
  EXPECT_EQ(inbox.count(), 0u);
  // The node still talks to its own cluster.
  auto a = start();
  a->set_receiver(1, nullptr);
  a->update_peers({{2, address(*b)}});
  a->send({heartbeat(1, 2, 3)});
  ASSERT_TRUE(inbox.wait(1).has_value());
}

TEST(TcpTransport, SnapshotStreamsInChunksAndIsVerified) {
  raftnginx::testing::TempDir tmp;
  auto sender_store =
      std::move(storage::SnapshotStore::open(storage::Env::posix(), tmp.sub("a"), 2)).value();
  auto staged = sender_store->begin();
  std::string big(3 * (1 << 20) + 12345, '\0');
  for (size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<char>(i * 7);
  std::ofstream(*staged + "/state.bin", std::ios::binary) << big;
  storage::SnapshotInfo info;
  info.meta = raft::SnapshotMeta{100, 4, raft::ConfState{{1, 2}, {}}};
  info.fsm_name = "test";
  auto sealed = sender_store->commit(*staged, info);
  ASSERT_TRUE(sealed.ok());

  auto a = start("test", 0, /*chunk=*/256 << 10);
  auto b = start();
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);
  a->set_receiver(1, nullptr);
  a->update_peers({{2, address(*b)}});
  raft::Message m;
  m.type = raft::MessageType::kSnapshot;
  m.from = 1;
  m.to = 2;
  m.term = 4;
  m.snapshot = info.meta;
  std::promise<bool> done;
  a->send_snapshot(m, *sealed, [&](bool ok) { done.set_value(ok); });
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(fut.get());
  auto got = inbox.wait(1);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->snapshot, info.meta);
  auto received = inbox.store().latest();
  ASSERT_TRUE(received.has_value());
  EXPECT_EQ(received->meta, info.meta);
  auto bytes = storage::Env::posix()->read_file(received->dir + "/state.bin");
  ASSERT_TRUE(bytes.ok());
  EXPECT_TRUE(*bytes == big);
}

TEST(TcpTransport, ReconnectsAfterThePeerRestarts) {
  raftnginx::testing::TempDir tmp;
  auto a = start();
  a->set_receiver(1, nullptr);
  auto b = start();
  const uint16_t port = b->port();
  {
    Inbox inbox(tmp.sub("b1"));
    b->set_receiver(2, &inbox);
    a->update_peers({{2, address(*b)}});
    a->send({heartbeat(1, 2, 1)});
    ASSERT_TRUE(inbox.wait(1).has_value());
    b->close(2);
    b.reset();
  }
  b = start("test", port);
  Inbox inbox(tmp.sub("b2"));
  b->set_receiver(2, &inbox);
  // Raft resends; so does this test, until the reconnection is made.
  std::optional<raft::Message> got;
  for (int i = 0; i < 50 && !got; ++i) {
    a->send({heartbeat(1, 2, 2)});
    got = inbox.wait(1, 100ms);
  }
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->term, 2u);
}

}  // namespace
}  // namespace raftnginx::transport
