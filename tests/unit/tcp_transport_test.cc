// TcpTransport on loopback: messages, snapshots in chunks, answers to a peer that is no member
// yet, reconnection; and what it refuses: garbage, other clusters, impostors, streams that write
// more than they announced, frames whose announced length never arrives, too many connections;
// with TLS: certificates of another CA, of another node, and plaintext.
#include "transport/tcp_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include "cluster/member.h"
#include "fault_env.h"
#include "net/certs.h"
#include "net/tls.h"
#include "raft/encoding.h"
#include "temp_dir.h"
#include "transport/frame.h"
#include "util/coding.h"

namespace raftnginx::transport {
namespace {

using namespace std::chrono_literals;

// Collects what arrives with who sent it; stages snapshots in a real snapshot store.
class Inbox final : public Receiver {
 public:
  explicit Inbox(const std::string& dir)
      : store_(std::move(storage::SnapshotStore::open(storage::Env::posix(), dir, 2)).value()) {}

  void receive(raft::Message m, Sender sender) override {
    std::lock_guard lock(mu_);
    senders_.push_back(sender);
    messages_.push_back(std::move(m));
    cv_.notify_all();
  }
  void unreachable(raft::NodeId) override {}
  Result<std::string> begin_snapshot_receive(Sender) override {
    std::lock_guard lock(mu_);
    return store_->begin();
  }
  void abort_snapshot_receive(const std::string& dir) override {
    std::lock_guard lock(mu_);
    aborted_.push_back(dir);
    store_->abort(dir);
    cv_.notify_all();
  }
  Status finish_snapshot_receive(raft::Message m, Sender sender, const std::string& staged,
                                 storage::SnapshotInfo info) override {
    const auto expected = info.files;
    std::lock_guard lock(mu_);
    auto sealed = store_->commit(staged, std::move(info), &expected);
    if (!sealed.ok())
      return sealed.status();
    senders_.push_back(sender);
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
  bool wait_aborted(std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return !aborted_.empty(); });
  }
  Sender sender(size_t n) {
    std::lock_guard lock(mu_);
    return senders_.at(n - 1);
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return messages_.size();
  }
  std::vector<std::string> aborted() {
    std::lock_guard lock(mu_);
    return aborted_;
  }
  storage::SnapshotStore& store() { return *store_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<raft::Message> messages_;
  std::vector<Sender> senders_;
  std::vector<std::string> aborted_;
  std::unique_ptr<storage::SnapshotStore> store_;
};

TcpTransportOptions options(const std::string& cluster = "test", uint16_t port = 0) {
  TcpTransportOptions o;
  o.listen = "127.0.0.1:" + std::to_string(port);
  o.cluster_name = cluster;
  o.cluster_id = cluster;
  return o;
}

std::unique_ptr<TcpTransport> start(TcpTransportOptions o) {
  auto t = TcpTransport::start(o);
  EXPECT_TRUE(t.ok()) << t.status().to_string();
  return std::move(t).value();
}

std::unique_ptr<TcpTransport> start(const std::string& cluster = "test", uint16_t port = 0) {
  return start(options(cluster, port));
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

// A raw socket speaking to a transport: a client of its port, or a connection a RawListener
// accepted from it.
class RawPeer {
 public:
  explicit RawPeer(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  struct Accepted {
    int fd;
  };
  explicit RawPeer(Accepted accepted) : fd_(accepted.fd), connected_(fd_ >= 0) {}
  ~RawPeer() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& bytes) { (void)!::write(fd_, bytes.data(), bytes.size()); }
  // The next frame the transport sends, or nullopt if the connection ends first or `timeout`
  // passes.
  std::optional<Frame> next_frame(std::chrono::milliseconds timeout = 5s) {
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (pending_.empty()) {
      char buf[64 << 10];
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0 || !reader_.feed(std::string_view(buf, static_cast<size_t>(n)), &pending_).ok())
        return std::nullopt;
    }
    Frame f = std::move(pending_.front());
    pending_.erase(pending_.begin());
    return f;
  }
  // True once the transport hung up (EOF or reset), within `timeout`.
  bool closed_by_peer(std::chrono::milliseconds timeout = 5s) {
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char sink[256];
    for (;;) {
      const ssize_t n = ::read(fd_, sink, sizeof sink);
      if (n == 0 || (n < 0 && errno == ECONNRESET))
        return true;
      if (n < 0)
        return false;  // timed out: still open
    }
  }

 private:
  int fd_;
  bool connected_ = false;
  FrameReader reader_{64 << 20};
  std::vector<Frame> pending_;
};

// A listening socket that plays a peer the transport dials.
class RawListener {
 public:
  RawListener() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 4), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~RawListener() { ::close(fd_); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The next connection that sends a frame after its hello (a snapshot stream), and that frame.
  // Connections that only say hello (the peer's message connection) are kept open, idle.
  std::pair<std::unique_ptr<RawPeer>, std::optional<Frame>> accept_stream() {
    for (int attempt = 0; attempt < 4; ++attempt) {
      auto conn = std::make_unique<RawPeer>(RawPeer::Accepted{::accept(fd_, nullptr, nullptr)});
      auto hello = conn->next_frame();
      EXPECT_TRUE(hello.has_value() && hello->type == FrameType::kHello);
      if (auto first = conn->next_frame(2s))
        return {std::move(conn), std::move(first)};
      idle_.push_back(std::move(conn));
    }
    return {nullptr, std::nullopt};
  }

 private:
  int fd_;
  uint16_t port_ = 0;
  std::vector<std::unique_ptr<RawPeer>> idle_;
};

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

TEST(TcpTransport, MessageArrivesIntactFromTheBoundSender) {
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
  EXPECT_EQ(inbox.sender(1).id, 1u);
  EXPECT_FALSE(inbox.sender(1).authenticated);  // plaintext: the hello's word only
}

TEST(TcpTransport, GarbageOtherClustersAndImpostorsAreRefusedAndHarmless) {
  raftnginx::testing::TempDir tmp;
  auto b = start();
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);
  for (const std::string& bytes :
       {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), std::string("\xff\xff\xff\xff junk", 9),
        encode_hello(Hello{"another-cluster", 9}),
        encode_hello(Hello{"test", 2}),  // claims to be the node itself
        encode_frame(FrameType::kMessage, "not after a hello")}) {
    RawPeer raw(b->port());
    ASSERT_TRUE(raw.connected());
    raw.send(bytes);
    EXPECT_TRUE(raw.closed_by_peer()) << bytes.substr(0, 20);
  }
  EXPECT_GE(b->refused_connections(), 5u);
  EXPECT_EQ(inbox.count(), 0u);
  // The node still talks to its own cluster.
  auto a = start();
  a->set_receiver(1, nullptr);
  a->update_peers({{2, address(*b)}});
  a->send({heartbeat(1, 2, 3)});
  ASSERT_TRUE(inbox.wait(1).has_value());
}

// A cluster made from a backup has an id of its own: the old cluster's members are strangers to
// it. A new node that has not joined yet takes the cluster that adds it, then only that one.
TEST(TcpTransport, ClusterIdsKeepARestoredClusterApartAndANewNodeLearnsItsOwn) {
  raftnginx::testing::TempDir tmp;
  auto fresh = start(options(""));
  Inbox inbox(tmp.sub("fresh"));
  fresh->set_receiver(2, &inbox);
  TcpTransportOptions restored_options = options("test");
  restored_options.cluster_id = "test/0123456789abcdef";
  auto restored = start(restored_options);
  restored->set_receiver(1, nullptr);
  restored->update_peers({{2, address(*fresh)}});
  restored->send({heartbeat(1, 2, 3)});
  ASSERT_TRUE(inbox.wait(1).has_value());

  fresh->set_cluster_id("test/0123456789abcdef");
  auto old_member = start(options("test"));
  old_member->set_receiver(3, nullptr);
  old_member->update_peers({{2, address(*fresh)}});
  const uint64_t refused_before = fresh->refused_connections();
  old_member->send({heartbeat(3, 2, 4)});
  for (int i = 0; i < 500 && fresh->refused_connections() == refused_before; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_GT(fresh->refused_connections(), refused_before);
  restored->send({heartbeat(1, 2, 5)});
  auto got = inbox.wait(2);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->from, 1u);  // the old member's heartbeat never arrived
}

TEST(TcpTransport, AnnouncedBytesThatNeverArriveCostNothingAndTimeOut) {
  raftnginx::testing::TempDir tmp;
  TcpTransportOptions o = options();
  o.io_timeout = 300ms;
  auto b = start(o);
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);
  RawPeer raw(b->port());
  // A valid hello, then a message frame that announces 60 MiB and sends 10 bytes of it.
  std::string stall = encode_hello(Hello{"test", 7});
  put_u32(&stall, 60u << 20);
  put_u8(&stall, static_cast<uint8_t>(FrameType::kMessage));
  stall += std::string(10, 'x');
  raw.send(stall);
  const auto began = std::chrono::steady_clock::now();
  EXPECT_TRUE(raw.closed_by_peer(5s));  // cut off once io_timeout passed mid-frame
  EXPECT_GE(std::chrono::steady_clock::now() - began, 250ms);
  EXPECT_TRUE(eventually([&] { return b->inbound_connections() == 0; }));
}

// A frame's deadline runs from its first byte: a peer trickling bytes cannot keep it open.
TEST(TcpTransport, TricklingAFrameDoesNotExtendItsDeadline) {
  raftnginx::testing::TempDir tmp;
  TcpTransportOptions o = options();
  o.io_timeout = 300ms;
  auto b = start(o);
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);
  RawPeer raw(b->port());
  std::string begin = encode_hello(Hello{"test", 7});
  put_u32(&begin, 1000);
  put_u8(&begin, static_cast<uint8_t>(FrameType::kMessage));
  raw.send(begin);
  const auto began = std::chrono::steady_clock::now();
  // One byte every 50 ms: each read comes well within io_timeout of the one before.
  while (!raw.closed_by_peer(50ms) && std::chrono::steady_clock::now() - began < 5s)
    raw.send("x");
  EXPECT_LT(std::chrono::steady_clock::now() - began, 1s);
}

// Frames in progress share one budget: a peer (or many) sending most of large frames is cut off
// once they hold it all, and what a reader held goes back to the budget with it.
TEST(SnapshotResume, RoundTripsAndRefusesMalformedAnswers) {
  const SnapshotResume sent{true, {{"a", 1}, {"state.bin", uint64_t{1} << 40}}};
  const std::string frame = encode_snapshot_resume(sent);
  auto got = decode_snapshot_resume(std::string_view(frame).substr(5));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_TRUE(got->accepted);
  EXPECT_EQ(got->held, sent.held);

  auto answer = [](uint8_t accepted, uint32_t count, const std::vector<std::string>& names) {
    std::string payload;
    put_u8(&payload, accepted);
    put_u32(&payload, count);
    for (const std::string& name : names) {
      put_bytes(&payload, name);
      put_u64(&payload, 7);
    }
    return payload;
  };
  EXPECT_TRUE(decode_snapshot_resume(answer(0, 0, {})).ok());
  EXPECT_FALSE(decode_snapshot_resume(answer(2, 0, {})).ok());  // not a flag
  EXPECT_TRUE(decode_snapshot_resume(answer(1, 2, {"a", "b"})).ok());
  EXPECT_FALSE(decode_snapshot_resume(answer(1, 2, {"a", "a"})).ok());           // names twice
  EXPECT_FALSE(decode_snapshot_resume(answer(1, 2, {"b", "a"})).ok());           // out of order
  EXPECT_FALSE(decode_snapshot_resume(answer(1, 0x7fffffff, {"a"})).ok());       // a count it lacks
  EXPECT_FALSE(decode_snapshot_resume(answer(1, 1, {"a"}) + "x").ok());          // trailing bytes
  EXPECT_FALSE(decode_snapshot_resume(answer(1, 1, {"a"}).substr(0, 10)).ok());  // cut short
  EXPECT_FALSE(decode_snapshot_resume("").ok());
}

TEST(FrameReader, FramesInProgressShareOneBudget) {
  FrameBudget budget{1000};
  std::vector<Frame> frames;
  std::string head;
  put_u32(&head, 5000);
  put_u8(&head, static_cast<uint8_t>(FrameType::kMessage));
  {
    FrameReader a(1 << 20, &budget);
    FrameReader b(1 << 20, &budget);
    ASSERT_TRUE(a.feed(head + std::string(600, 'x'), &frames).ok());
    EXPECT_EQ(budget.used, 605u);
    EXPECT_EQ(b.feed(head + std::string(600, 'x'), &frames).code(), Status::Code::kBusy);
    ASSERT_TRUE(b.feed(encode_frame(FrameType::kMessage, "small"), &frames).ok());
    EXPECT_EQ(frames.size(), 1u);
    EXPECT_EQ(budget.used, 605u);  // a whole frame leaves the budget as it is handed over
  }
  EXPECT_EQ(budget.used, 0u);
}

// Strangers holding every slot (for an address, or in all) cannot keep a member out: the oldest
// connection not bound to a member makes room. Once members hold every slot, a stranger is
// refused.
TEST(TcpTransport, InboundCapsMakeRoomForMembersNotStrangers) {
  raftnginx::testing::TempDir tmp;
  for (const bool per_address : {true, false}) {
    TcpTransportOptions o = options();
    if (per_address) {
      o.max_connections_per_address = 4;
    } else {
      o.max_inbound_connections = 4;
    }
    auto b = start(o);
    Inbox inbox(tmp.sub(per_address ? "b1" : "b2"));
    b->set_receiver(2, &inbox);
    // 20..23 are members (their addresses answer nothing); 10..13 are strangers.
    b->update_peers(
        {{20, "127.0.0.1:1"}, {21, "127.0.0.1:1"}, {22, "127.0.0.1:1"}, {23, "127.0.0.1:1"}});
    std::vector<std::unique_ptr<RawPeer>> strangers;
    for (raft::NodeId id = 10; id < 14; ++id) {
      strangers.push_back(std::make_unique<RawPeer>(b->port()));
      strangers.back()->send(encode_hello(Hello{"test", id}));
    }
    ASSERT_TRUE(eventually([&] { return b->inbound_connections() == 4; }));
    std::vector<std::unique_ptr<RawPeer>> members;
    for (raft::NodeId id = 20; id < 24; ++id) {
      members.push_back(std::make_unique<RawPeer>(b->port()));
      members.back()->send(
          encode_hello(Hello{"test", id}) +
          encode_frame(FrameType::kMessage, raft::encode_message(heartbeat(id, 2, 1))));
      const size_t heard = id - 19;
      ASSERT_TRUE(inbox.wait(heard).has_value()) << id;  // through a slot a stranger had
      EXPECT_EQ(inbox.sender(heard).id, id);
    }
    for (auto& stranger : strangers)
      EXPECT_TRUE(stranger->closed_by_peer());
    RawPeer late(b->port());
    late.send(encode_hello(Hello{"test", 15}));
    EXPECT_TRUE(late.closed_by_peer());
    EXPECT_TRUE(eventually([&] { return b->inbound_connections() == 4; }));
  }
}

TEST(TcpTransport, ANonMemberIsAnsweredOnItsOwnConnection) {
  raftnginx::testing::TempDir tmp;
  // The leader knows the joiner; the joiner knows no one yet.
  auto leader = start();
  auto joiner = start();
  Inbox at_leader(tmp.sub("l"));
  Inbox at_joiner(tmp.sub("j"));
  leader->set_receiver(1, &at_leader);
  joiner->set_receiver(4, &at_joiner);
  leader->update_peers({{4, address(*joiner)}});
  leader->send({heartbeat(1, 4, 2)});
  ASSERT_TRUE(at_joiner.wait(1).has_value());
  raft::Message answer;
  answer.type = raft::MessageType::kHeartbeatResponse;
  answer.from = 4;
  answer.to = 1;
  answer.term = 2;
  joiner->send({answer});
  auto got = at_leader.wait(1);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->type, raft::MessageType::kHeartbeatResponse);
  EXPECT_EQ(at_leader.sender(1).id, 4u);
}

storage::SnapshotInfo sealed_snapshot(storage::SnapshotStore& store, const std::string& data) {
  auto staged = store.begin();
  std::ofstream(*staged + "/state.bin", std::ios::binary) << data;
  storage::SnapshotInfo info;
  info.meta = raft::SnapshotMeta{100, 4, raft::ConfState{{1, 2}, {}}};
  info.fsm_name = "test";
  auto sealed = store.commit(*staged, info);
  EXPECT_TRUE(sealed.ok());
  return *sealed;
}

raft::Message snapshot_message(const storage::SnapshotInfo& info) {
  raft::Message m;
  m.type = raft::MessageType::kSnapshot;
  m.from = 1;
  m.to = 2;
  m.term = 4;
  m.snapshot = info.meta;
  return m;
}

TEST(TcpTransport, SnapshotStreamsInChunksAndIsVerified) {
  raftnginx::testing::TempDir tmp;
  auto sender_store =
      std::move(storage::SnapshotStore::open(storage::Env::posix(), tmp.sub("a"), 2)).value();
  std::string big(3 * (1 << 20) + 12345, '\0');
  for (size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<char>(i * 7);
  const storage::SnapshotInfo info = sealed_snapshot(*sender_store, big);

  TcpTransportOptions o = options();
  o.chunk_bytes = 256 << 10;
  auto a = start(o);
  auto b = start();
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);
  a->set_receiver(1, nullptr);
  a->update_peers({{2, address(*b)}});
  std::promise<bool> done;
  a->send_snapshot(snapshot_message(info), info, [&](bool ok) { done.set_value(ok); });
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

std::string chunk_frame(const std::string& name, std::string_view bytes) {
  std::string payload;
  put_bytes(&payload, name);
  put_bytes(&payload, bytes);
  return encode_frame(FrameType::kSnapshotChunk, payload);
}

std::string snapshot_bytes(size_t n) {
  std::string bytes(n, '\0');
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<char>(i * 7 + i / 251);
  return bytes;
}

TEST(TcpTransport, AnOfferedStreamThatBreaksOffResumesWhereItStopped) {
  raftnginx::testing::TempDir tmp;
  auto sender_store =
      std::move(storage::SnapshotStore::open(storage::Env::posix(), tmp.sub("a"), 2)).value();
  const std::string big = snapshot_bytes(300000);
  const storage::SnapshotInfo info = sealed_snapshot(*sender_store, big);
  const std::string offer =
      encode_frame(FrameType::kSnapshotOffer, storage::encode_snapshot_info(info));
  auto b = start();
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);

  {
    RawPeer first(b->port());
    first.send(encode_hello(Hello{"test", 1}) + offer);
    auto answer = first.next_frame();
    ASSERT_TRUE(answer.has_value());
    ASSERT_EQ(answer->type, FrameType::kSnapshotResume);
    auto resume = decode_snapshot_resume(answer->payload);
    ASSERT_TRUE(resume.ok());
    EXPECT_TRUE(resume->accepted);
    EXPECT_TRUE(resume->held.empty());
    first.send(chunk_frame("state.bin", std::string_view(big).substr(0, 120000)));
  }  // the link breaks
  ASSERT_TRUE(eventually([&] { return b->inbound_connections() == 0; }));

  RawPeer second(b->port());
  second.send(encode_hello(Hello{"test", 1}) + offer);
  auto answer = second.next_frame();
  ASSERT_TRUE(answer.has_value());
  auto resume = decode_snapshot_resume(answer->payload);
  ASSERT_TRUE(resume.ok());
  EXPECT_TRUE(resume->accepted);
  EXPECT_EQ(resume->held, (std::map<std::string, uint64_t>{{"state.bin", 120000}}));
  second.send(chunk_frame("state.bin", std::string_view(big).substr(120000)) +
              encode_frame(FrameType::kSnapshotEnd, raft::encode_message(snapshot_message(info))));
  auto ack = second.next_frame();
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->type, FrameType::kSnapshotAck);
  EXPECT_EQ(ack->payload, "\1");
  ASSERT_TRUE(inbox.wait(1).has_value());
  auto received = inbox.store().latest();
  ASSERT_TRUE(received.has_value());
  auto bytes = storage::Env::posix()->read_file(received->dir + "/state.bin");
  ASSERT_TRUE(bytes.ok());
  EXPECT_TRUE(*bytes == big);
}

TEST(TcpTransport, APlainStreamLeavesTheKeptOneAloneAndAResumeNeedsRoomOnlyForTheRest) {
  raftnginx::testing::TempDir tmp;
  auto sender_store =
      std::move(storage::SnapshotStore::open(storage::Env::posix(), tmp.sub("a"), 2)).value();
  const std::string big = snapshot_bytes(300000);
  const storage::SnapshotInfo info = sealed_snapshot(*sender_store, big);
  const std::string announced = storage::encode_snapshot_info(info);
  storage::testing::FaultEnv env;
  TcpTransportOptions o = options();
  o.env = &env;
  auto b = start(o);
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);
  {
    RawPeer first(b->port());
    first.send(encode_hello(Hello{"test", 1}) + encode_frame(FrameType::kSnapshotOffer, announced) +
               chunk_frame("state.bin", std::string_view(big).substr(0, 200000)));
    ASSERT_TRUE(first.next_frame().has_value());
  }
  ASSERT_TRUE(eventually([&] { return b->inbound_connections() == 0; }));
  {
    RawPeer plain(b->port());
    plain.send(encode_hello(Hello{"test", 1}) + encode_frame(FrameType::kSnapshotBegin, announced) +
               chunk_frame("state.bin", std::string_view(big).substr(0, 1000)));
  }
  ASSERT_TRUE(inbox.wait_aborted());  // the plain stream's own files, not the kept ones
  ASSERT_TRUE(eventually([&] { return b->inbound_connections() == 0; }));

  env.disk_full_after(150000);  // room for the missing 100,000 bytes, not for the whole
  RawPeer resumed(b->port());
  resumed.send(encode_hello(Hello{"test", 1}) + encode_frame(FrameType::kSnapshotOffer, announced));
  auto answer = resumed.next_frame();
  ASSERT_TRUE(answer.has_value());
  auto resume = decode_snapshot_resume(answer->payload);
  ASSERT_TRUE(resume.ok());
  ASSERT_TRUE(resume->accepted);
  EXPECT_EQ(resume->held, (std::map<std::string, uint64_t>{{"state.bin", 200000}}));
  resumed.send(chunk_frame("state.bin", std::string_view(big).substr(200000)) +
               encode_frame(FrameType::kSnapshotEnd, raft::encode_message(snapshot_message(info))));
  auto ack = resumed.next_frame();
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->payload, "\1");
  ASSERT_TRUE(inbox.wait(1).has_value());
  auto bytes = storage::Env::posix()->read_file(inbox.store().latest()->dir + "/state.bin");
  ASSERT_TRUE(bytes.ok());
  EXPECT_TRUE(*bytes == big);
}

TEST(TcpTransport, ADifferentSnapshotOfferedDropsWhatWasKept) {
  raftnginx::testing::TempDir tmp;
  auto sender_store =
      std::move(storage::SnapshotStore::open(storage::Env::posix(), tmp.sub("a"), 2)).value();
  const storage::SnapshotInfo info = sealed_snapshot(*sender_store, snapshot_bytes(5000));
  storage::SnapshotInfo newer = info;
  newer.meta.index = 200;
  auto b = start();
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);
  {
    RawPeer first(b->port());
    first.send(encode_hello(Hello{"test", 1}) +
               encode_frame(FrameType::kSnapshotOffer, storage::encode_snapshot_info(info)) +
               chunk_frame("state.bin", snapshot_bytes(5000).substr(0, 1000)));
    ASSERT_TRUE(first.next_frame().has_value());
  }
  ASSERT_TRUE(eventually([&] { return b->inbound_connections() == 0; }));
  EXPECT_TRUE(inbox.aborted().empty());  // kept

  RawPeer second(b->port());
  second.send(encode_hello(Hello{"test", 1}) +
              encode_frame(FrameType::kSnapshotOffer, storage::encode_snapshot_info(newer)));
  auto answer = second.next_frame();
  ASSERT_TRUE(answer.has_value());
  auto resume = decode_snapshot_resume(answer->payload);
  ASSERT_TRUE(resume.ok());
  EXPECT_TRUE(resume->held.empty());
  ASSERT_TRUE(inbox.wait_aborted());
  EXPECT_FALSE(storage::Env::posix()->exists(inbox.aborted().front()));
}

TEST(TcpTransport, TheSenderStartsEachFileWhereTheReceiverHoldsIt) {
  raftnginx::testing::TempDir tmp;
  auto sender_store =
      std::move(storage::SnapshotStore::open(storage::Env::posix(), tmp.sub("a"), 2)).value();
  const std::string big = snapshot_bytes(700000);
  const storage::SnapshotInfo info = sealed_snapshot(*sender_store, big);
  RawListener peer;
  TcpTransportOptions o = options();
  o.chunk_bytes = 64 << 10;
  auto a = start(o);
  a->set_receiver(1, nullptr);
  a->update_peers({{2, peer.address()}});
  std::promise<bool> done;
  a->send_snapshot(snapshot_message(info), info, [&](bool ok) { done.set_value(ok); });

  auto [conn, offer] = peer.accept_stream();
  ASSERT_TRUE(offer.has_value());
  ASSERT_EQ(offer->type, FrameType::kSnapshotOffer);
  EXPECT_EQ(offer->payload, storage::encode_snapshot_info(info));
  conn->send(encode_snapshot_resume(SnapshotResume{true, {{"state.bin", 250000}}}));
  std::string streamed;
  for (;;) {
    auto f = conn->next_frame();
    ASSERT_TRUE(f.has_value());
    if (f->type == FrameType::kSnapshotEnd)
      break;
    ASSERT_EQ(f->type, FrameType::kSnapshotChunk);
    Reader r(f->payload);
    EXPECT_EQ(r.bytes(), "state.bin");
    streamed += r.bytes();
  }
  EXPECT_TRUE(streamed == big.substr(250000));
  conn->send(encode_frame(FrameType::kSnapshotAck, "\1"));
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(fut.get());
  EXPECT_EQ(a->snapshot_bytes_resumed(), 250000u);
  EXPECT_EQ(a->snapshot_bytes_sent(), big.size() - 250000);
}

TEST(TcpTransport, AReceiverThatDoesNotKnowOffersGetsAPlainStreamAndAnImpossibleAnswerIsRefused) {
  raftnginx::testing::TempDir tmp;
  auto sender_store =
      std::move(storage::SnapshotStore::open(storage::Env::posix(), tmp.sub("a"), 2)).value();
  const std::string data = snapshot_bytes(9000);
  const storage::SnapshotInfo info = sealed_snapshot(*sender_store, data);
  RawListener peer;
  auto a = start();
  a->set_receiver(1, nullptr);
  a->update_peers({{2, peer.address()}});

  // An earlier release closes the connection at the offer: the stream begins again, plainly.
  std::promise<bool> done;
  a->send_snapshot(snapshot_message(info), info, [&](bool ok) { done.set_value(ok); });
  {
    auto [old_release, offer] = peer.accept_stream();
    ASSERT_TRUE(offer.has_value());
    ASSERT_EQ(offer->type, FrameType::kSnapshotOffer);
  }
  auto [plain, begin] = peer.accept_stream();
  ASSERT_TRUE(begin.has_value());
  EXPECT_EQ(begin->type, FrameType::kSnapshotBegin);
  auto chunk = plain->next_frame();
  ASSERT_TRUE(chunk.has_value());
  Reader r(chunk->payload);
  (void)r.bytes();
  EXPECT_TRUE(r.bytes() == data);
  EXPECT_EQ(plain->next_frame()->type, FrameType::kSnapshotEnd);
  plain->send(encode_frame(FrameType::kSnapshotAck, "\1"));
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(fut.get());

  // A receiver that claims to hold what the snapshot does not have is not believed: no chunk.
  for (const SnapshotResume& claim :
       {SnapshotResume{true, {{"state.bin", 9001}}}, SnapshotResume{true, {{"other.bin", 10}}}}) {
    std::promise<bool> refused;
    a->send_snapshot(snapshot_message(info), info, [&](bool ok) { refused.set_value(ok); });
    auto [liar, liar_offer] = peer.accept_stream();
    ASSERT_TRUE(liar_offer.has_value());
    ASSERT_EQ(liar_offer->type, FrameType::kSnapshotOffer);
    liar->send(encode_snapshot_resume(claim));
    EXPECT_FALSE(liar->next_frame().has_value());
    auto fut = refused.get_future();
    ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
    EXPECT_FALSE(fut.get());
  }
}

TEST(TcpTransport, APeerThatAnsweredAnOfferIsOfferedAgainAfterALostAnswer) {
  raftnginx::testing::TempDir tmp;
  auto sender_store =
      std::move(storage::SnapshotStore::open(storage::Env::posix(), tmp.sub("a"), 2)).value();
  const storage::SnapshotInfo info = sealed_snapshot(*sender_store, snapshot_bytes(9000));
  RawListener peer;
  auto a = start();
  a->set_receiver(1, nullptr);
  a->update_peers({{2, peer.address()}});
  auto send = [&] {
    auto done = std::make_shared<std::promise<bool>>();
    a->send_snapshot(snapshot_message(info), info, [done](bool ok) { done->set_value(ok); });
    return done->get_future();
  };

  auto first = send();
  {
    auto [conn, offer] = peer.accept_stream();
    ASSERT_TRUE(offer.has_value());
    conn->send(encode_snapshot_resume(SnapshotResume{true, {}}));
    ASSERT_EQ(conn->next_frame()->type, FrameType::kSnapshotChunk);
  }  // the link breaks mid-stream
  ASSERT_EQ(first.wait_for(10s), std::future_status::ready);
  EXPECT_FALSE(first.get());

  auto second = send();
  {
    auto [conn, offer] = peer.accept_stream();
    ASSERT_TRUE(offer.has_value());
    ASSERT_EQ(offer->type, FrameType::kSnapshotOffer);
  }  // the link breaks before the answer: no plain stream follows, which could not resume
  ASSERT_EQ(second.wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(second.get());

  auto third = send();
  auto [conn, offer] = peer.accept_stream();
  ASSERT_TRUE(offer.has_value());
  EXPECT_EQ(offer->type, FrameType::kSnapshotOffer);
}

TEST(TcpTransport, AStreamThatWritesMoreThanItAnnouncedIsCutAndItsFilesRemoved) {
  raftnginx::testing::TempDir tmp;
  auto b = start();
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(2, &inbox);
  storage::SnapshotInfo info;
  info.meta = raft::SnapshotMeta{100, 4, raft::ConfState{{1, 2}, {}}};
  info.fsm_name = "test";
  info.files = {storage::SnapshotFile{"state.bin", 10, 0}};
  std::string chunk;
  put_bytes(&chunk, "state.bin");
  put_bytes(&chunk, std::string(11, 'x'));  // one byte more than announced
  RawPeer raw(b->port());
  raw.send(encode_hello(Hello{"test", 1}) +
           encode_frame(FrameType::kSnapshotBegin, storage::encode_snapshot_info(info)) +
           encode_frame(FrameType::kSnapshotChunk, chunk));
  EXPECT_TRUE(raw.closed_by_peer());
  ASSERT_TRUE(inbox.wait_aborted());
  EXPECT_FALSE(storage::Env::posix()->exists(inbox.aborted().front()));
  EXPECT_EQ(inbox.count(), 0u);
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

// A cluster CA and node certificates on disk, for the TLS tests.
class Pki {
 public:
  explicit Pki(const std::string& dir) : dir_(dir) {
    std::filesystem::create_directories(dir);
    ca_ = std::move(net::make_ca("test-ca")).value();
    write("ca.pem", ca_.certificate);
  }
  // Files for a node whose certificate names `name`, signed by this CA (or by `other_ca`).
  net::TlsFiles node(const std::string& name, const net::Pem* other_ca = nullptr) {
    return issue(name, {"127.0.0.1", "test"}, other_ca);
  }
  // Files for any certificate of this CA (or of `other_ca`): `hosts` are its DNS names.
  net::TlsFiles issue(const std::string& name, std::vector<std::string> hosts,
                      const net::Pem* other_ca = nullptr) {
    net::CertificateRequest req;
    req.common_name = name;
    req.hosts = std::move(hosts);
    auto pem = std::move(net::make_certificate(other_ca ? *other_ca : ca_, req)).value();
    write(name + ".pem", pem.certificate);
    write(name + "-key.pem", pem.key);
    return net::TlsFiles{dir_ + "/" + name + ".pem", dir_ + "/" + name + "-key.pem",
                         dir_ + "/ca.pem"};
  }

 private:
  void write(const std::string& name, const std::string& data) {
    std::ofstream(dir_ + "/" + name) << data;
  }
  std::string dir_;
  net::Pem ca_;
};

std::unique_ptr<TcpTransport> start_tls(const net::TlsFiles& files, uint16_t port = 0) {
  TcpTransportOptions o = options("test", port);
  auto tls = net::TlsContext::load(files, net::TlsContext::PeerCertificate::kRequired);
  EXPECT_TRUE(tls.ok()) << tls.status().to_string();
  o.tls = std::move(tls).value();
  return start(o);
}

TEST(TcpTransport, MutualTlsBindsTheCertificatesNodeToTheConnection) {
  raftnginx::testing::TempDir tmp;
  Pki ready(tmp.sub("pki"));
  const raft::NodeId n1 = cluster::node_id_for("n1");
  const raft::NodeId n2 = cluster::node_id_for("n2");
  auto a = start_tls(ready.node("n1"));
  auto b = start_tls(ready.node("n2"));
  Inbox inbox(tmp.sub("b"));
  b->set_receiver(n2, &inbox);
  a->set_receiver(n1, nullptr);
  a->update_peers({{n2, address(*b)}});
  a->send({heartbeat(n1, n2, 3)});
  ASSERT_TRUE(inbox.wait(1).has_value());
  EXPECT_EQ(inbox.sender(1).id, n1);
  EXPECT_TRUE(inbox.sender(1).authenticated);

  // A node whose certificate names n3 cannot speak as n1, nor can a certificate of another CA,
  // nor a plaintext peer. Each dials as soon as it knows the peer: counted from here.
  const size_t before = inbox.count();
  const uint64_t refused = b->refused_connections();
  auto impostor = start_tls(ready.node("n3"));
  impostor->set_receiver(n1, nullptr);  // its hello claims n1
  impostor->update_peers({{n2, address(*b)}});
  net::Pem other_ca = std::move(net::make_ca("other-ca")).value();
  auto stranger = start_tls(ready.node("n1", &other_ca));
  stranger->set_receiver(n1, nullptr);
  stranger->update_peers({{n2, address(*b)}});
  auto plaintext = start();
  plaintext->set_receiver(n1, nullptr);
  plaintext->update_peers({{n2, address(*b)}});
  // A certificate of the cluster's CA named n1 but without the cluster's name (a client's).
  auto client = start_tls(ready.issue("n1", {"127.0.0.1"}));
  client->set_receiver(n1, nullptr);
  client->update_peers({{n2, address(*b)}});
  // A node certificate that also lists other nodes' names among its hosts speaks only for n3.
  auto many_names = start_tls(ready.issue("n3", {"n1", "n2", "test"}));
  many_names->set_receiver(n1, nullptr);
  many_names->update_peers({{n2, address(*b)}});
  for (auto* t : {impostor.get(), stranger.get(), plaintext.get(), client.get(), many_names.get()})
    t->send({heartbeat(n1, n2, 4)});
  EXPECT_TRUE(eventually([&] { return b->refused_connections() >= refused + 5; }));
  EXPECT_EQ(inbox.count(), before);

  // And a node only dials the member it means: n2's address answering with n3's certificate is
  // not n2.
  auto n3_at_n2 = start_tls(ready.node("n3"));
  Inbox unreached(tmp.sub("c"));
  n3_at_n2->set_receiver(cluster::node_id_for("n3"), &unreached);
  a->update_peers({{n2, address(*n3_at_n2)}});
  a->send({heartbeat(n1, n2, 5)});
  EXPECT_FALSE(unreached.wait(1, 500ms).has_value());
}

}  // namespace
}  // namespace raftnginx::transport
