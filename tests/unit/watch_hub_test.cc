// The key-value store's change hub: watch streams, blocking queries, and the leader's expiry.
#include "kv/watch_hub.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <map>
#include <nlohmann/json.hpp>

#include "fsm/memory_kv.h"
#include "kv/prefix_index.h"
#include "kv_commands.h"

namespace raftnginx::kv {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using raftnginx::testing::set_cmd;

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// The next piece of a stream, waiting up to 5 s for it; nullopt if none came.
std::optional<std::string> next_piece(http::BodyStream& stream) {
  auto promise = std::make_shared<std::promise<std::string>>();
  auto future = promise->get_future();
  stream.next([promise](std::string piece) { promise->set_value(std::move(piece)); });
  if (future.wait_for(5s) != std::future_status::ready)
    return std::nullopt;
  return future.get();
}

// Whether `ready` comes to hold within 5 s (it depends on the hub's thread).
bool eventually(const std::function<bool()>& ready) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!ready()) {
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::yield();
  }
  return true;
}

// The NDJSON lines of a piece, parsed.
std::vector<json> lines(const std::string& piece) {
  std::vector<json> out;
  size_t start = 0;
  for (size_t end; (end = piece.find('\n', start)) != std::string::npos; start = end + 1)
    out.push_back(json::parse(piece.substr(start, end - start)));
  return out;
}

// "3 put a/1, 4 delete a/2" for the changes in a piece.
std::string describe(const std::string& piece) {
  std::string out;
  for (const json& j : lines(piece)) {
    if (!out.empty())
      out += ", ";
    if (j.contains("progress")) {
      out += "progress " + std::to_string(j["progress"].get<uint64_t>());
      continue;
    }
    out += std::to_string(j["index"].get<uint64_t>()) + " " + j["type"].get<std::string>() + " " +
           j["key"].get<std::string>();
  }
  return out;
}

// A replica that applies what it is given at once, as a one-node cluster would.
class FakeReplica final : public Replica {
 public:
  explicit FakeReplica(fsm::KvStore* store) : store_(store) {}
  void propose(std::string command, std::string,
               std::function<void(Result<Outcome>)> done) override {
    raft::Index index = 0;
    std::vector<fsm::ApplyResult> results;
    {
      std::lock_guard lock(mu_);
      index = ++last_;
      proposed_.push_back(command);
      fsm::Command cmd{index, 1, now_ms(), command};
      EXPECT_TRUE(store_->apply({&cmd, 1}, &results).ok());
    }
    changed_.notify_all();
    done(Outcome{index, results.at(0), false, true});
  }
  void read_barrier(std::function<void(Status)> done) override { done(Status()); }
  ReplicaStatus replica_status() const override {
    std::lock_guard lock(mu_);
    ++status_calls_;
    changed_.notify_all();
    return ReplicaStatus{"n1", role_, 1, "", "", last_, last_};
  }
  raft::Index applied_index() const override { return store_->applied_index(); }
  std::chrono::steady_clock::time_point leader_contact() const override {
    return std::chrono::steady_clock::now();
  }

  void set_role(std::string role) {
    std::lock_guard lock(mu_);
    role_ = std::move(role);
  }
  void set_last(raft::Index last) {
    std::lock_guard lock(mu_);
    last_ = last;
  }
  // Waits until `ready` holds (checked under the lock), up to 5 s.
  bool wait_for(const std::function<bool()>& ready) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, 5s, ready);
  }
  std::vector<std::string> proposed_;
  mutable int status_calls_ = 0;

 private:
  fsm::KvStore* store_;
  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::string role_ = "follower";
  raft::Index last_ = 0;
};

class WatchHubTest : public ::testing::Test {
 protected:
  void start(WatchHubOptions options = {}) {
    options.progress_interval = 1h;  // progress only where a test asks for it
    options.expiry_interval = 10ms;
    start_with(options);
  }
  void start_with(WatchHubOptions options) {
    hub = WatchHub::start(&store, options);
    store.set_observer(hub.get());
  }
  void TearDown() override {
    if (hub)
      hub->attach(nullptr);
  }
  void apply(raft::Index index, const std::string& data, uint64_t time_ms = 1000) {
    std::vector<fsm::ApplyResult> results;
    fsm::Command cmd{index, 1, time_ms, data};
    ASSERT_TRUE(store.apply({&cmd, 1}, &results).ok());
  }
  std::shared_ptr<http::BodyStream> watch(const std::string& prefix, raft::Index from,
                                          WatchFormat format = WatchFormat::kNdjson) {
    auto stream = hub->watch(prefix, from, format);
    EXPECT_TRUE(stream.ok()) << stream.status().to_string();
    return stream.ok() ? *stream : nullptr;
  }

  fsm::MemoryKv store;
  std::shared_ptr<WatchHub> hub;
};

TEST(PrefixIndexTest, AKeyFindsTheItemsOfEachOfItsPrefixesAndNoOthers) {
  PrefixIndex<int> index;
  index.add("", 1);
  index.add("a/", 2);
  index.add("a/b", 3);
  index.add("a/b", 4);
  index.add("b/", 5);
  index.add("a/bcdef", 6);  // longer than the key looked up
  const auto found = [&](std::string_view key) {
    std::vector<int> out;
    index.for_each_match(key, [&](int item) { out.push_back(item); });
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(found("a/bc"), (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(found("b"), (std::vector<int>{1}));
  EXPECT_EQ(found(""), (std::vector<int>{1}));
  index.remove("a/b", 3);
  index.remove("a/b", 3);  // twice: nothing more happens
  index.remove("c/", 9);   // never added
  index.remove("", 1);
  EXPECT_EQ(found("a/bc"), (std::vector<int>{2, 4}));
  index.remove("a/b", 4);
  EXPECT_EQ(found("a/bcdefg"), (std::vector<int>{2, 6}));
}

TEST_F(WatchHubTest, AWatchFromAnIndexGetsEveryLaterChangeUnderItsPrefixInOrder) {
  start();
  apply(1, set_cmd("a/1", "x"));
  apply(2, set_cmd({{"a/2", "y"}, {"b/1", "z"}}));
  apply(3, raftnginx::testing::delete_cmd("a/1"));
  auto stream = watch("a/", 2);
  // The history is taken in by the hub's thread: progress may come before the changes.
  std::string seen;
  while (seen.find("3 delete") == std::string::npos) {
    auto piece = next_piece(*stream);
    ASSERT_TRUE(piece.has_value());
    if (piece->find("progress") == std::string::npos)
      seen += (seen.empty() ? "" : ", ") + describe(*piece);
  }
  EXPECT_EQ(seen, "2 put a/2, 3 delete a/1");
}

TEST_F(WatchHubTest, AParkedStreamWakesOnAChangeAndHearsProgressWhenIdle) {
  WatchHubOptions options;
  options.progress_interval = 50ms;
  start_with(options);
  apply(1, set_cmd("other", "x"));
  auto stream = watch("k", 0);
  // Nothing under "k" yet: the first piece says how far the node is.
  auto first = next_piece(*stream);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(describe(*first).substr(0, 8), "progress");
  std::promise<std::string> woken;
  stream->next([&](std::string piece) { woken.set_value(std::move(piece)); });
  apply(2, set_cmd("k", "v"));
  auto future = woken.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  const std::string piece = future.get();
  // A progress may come first if the change is slower than the interval.
  EXPECT_NE(piece.find("\"key\":\"k\""), std::string::npos) << piece;
  auto idle = next_piece(*stream);
  ASSERT_TRUE(idle.has_value());
  EXPECT_EQ(describe(*idle), "progress 2");
}

TEST_F(WatchHubTest, OneIndexIsNeverSplitAcrossPieces) {
  WatchHubOptions options;
  options.piece_bytes = 10;  // smaller than any one change
  start(options);
  apply(1, set_cmd({{"a", "1"}, {"b", "2"}, {"c", "3"}}));
  apply(2, set_cmd("d", "4"));
  auto stream = watch("", 1);
  auto piece = next_piece(*stream);
  ASSERT_TRUE(piece.has_value());
  // Either nothing of index 1 had reached the history yet (a progress), or all of it.
  while (piece->find("progress") != std::string::npos) {
    piece = next_piece(*stream);
    ASSERT_TRUE(piece.has_value());
  }
  EXPECT_EQ(describe(*piece), "1 put a, 1 put b, 1 put c");
  piece = next_piece(*stream);
  ASSERT_TRUE(piece.has_value());
  EXPECT_EQ(describe(*piece), "2 put d");
}

TEST_F(WatchHubTest, ServerSentEventsCarryTheIndexAsTheirId) {
  WatchHubOptions options;
  options.progress_interval = 0ms;
  start_with(options);
  auto stream = watch("", 0, WatchFormat::kEventStream);
  auto progress = next_piece(*stream);
  ASSERT_TRUE(progress.has_value());
  EXPECT_EQ(*progress, "event: progress\ndata: {\"progress\":0}\n\n");
  apply(1, set_cmd({{"a", "1"}, {"b", "2"}}));
  std::string piece;
  while (piece.find("id: 1") == std::string::npos) {
    auto next = next_piece(*stream);
    ASSERT_TRUE(next.has_value());
    piece = *next;
  }
  EXPECT_EQ(piece.substr(0, 14), "id: 1\ndata: {\"");
  EXPECT_EQ(std::count(piece.begin(), piece.end(), '\n'), 4);  // id, two data lines, the end
}

TEST_F(WatchHubTest, BoundedHistoryAnswersCompactedAndEndsASlowWatcher) {
  WatchHubOptions options;
  options.history_events = 3;
  start(options);
  auto slow = watch("", 1);
  for (raft::Index i = 1; i <= 6; ++i)
    apply(i, set_cmd("k" + std::to_string(i), "v"));
  // The hub takes changes in on its own thread, and keeps at most the last three: how many it
  // could keep depends on when it took them in.
  ASSERT_TRUE(eventually([&] { return hub->compacted_index() >= 3; }));
  const raft::Index compacted = hub->compacted_index();
  EXPECT_LE(compacted, 6u);
  auto old = hub->watch("", compacted, WatchFormat::kNdjson);
  EXPECT_EQ(old.status().code(), Status::Code::kCompacted);
  EXPECT_TRUE(hub->watch("", compacted + 1, WatchFormat::kNdjson).ok());
  // The watcher that never read lost its place: told where it was, then the end.
  auto piece = next_piece(*slow);
  ASSERT_TRUE(piece.has_value());
  const json error = json::parse(*piece);
  EXPECT_EQ(error["error"].get<std::string>().substr(0, 4), "slow");
  EXPECT_EQ(error["resume_from"], 1);
  EXPECT_EQ(error["compacted_index"], compacted);
  EXPECT_EQ(next_piece(*slow), "");
}

TEST_F(WatchHubTest, AChangeWakesOnlyTheParkedWatchersItConcerns) {
  constexpr int kWatchers = 1000;
  WatchHubOptions options;
  options.max_watchers = kWatchers;
  start(options);
  std::vector<std::shared_ptr<http::BodyStream>> streams;
  // Shared with the callbacks: the hub ends every parked one when the test's fixture stops it.
  struct Woken {
    std::mutex mu;
    std::condition_variable cv;
    std::map<int, std::string> pieces;  // watcher -> its piece
  };
  auto woken = std::make_shared<Woken>();
  for (int i = 0; i < kWatchers; ++i) {
    streams.push_back(watch("w" + std::to_string(i) + "/", 0));
    ASSERT_EQ(describe(next_piece(*streams.back()).value_or("")), "progress 0");
    streams.back()->next([woken, i](std::string piece) {
      std::lock_guard lock(woken->mu);
      woken->pieces[i] = std::move(piece);
      woken->cv.notify_all();
    });
  }
  const auto wait_for = [&](size_t count) {
    std::unique_lock lock(woken->mu);
    return woken->cv.wait_for(lock, 5s, [&] { return woken->pieces.size() >= count; });
  };
  apply(1, set_cmd("w7/x", "v"));
  ASSERT_TRUE(wait_for(1));
  // A second change, after the hub handed out everything the first one woke.
  apply(2, set_cmd("w70/x", "v"));
  ASSERT_TRUE(wait_for(2));
  std::lock_guard lock(woken->mu);
  EXPECT_EQ(woken->pieces.size(), 2u);
  EXPECT_EQ(describe(woken->pieces[7]), "1 put w7/x");
  EXPECT_EQ(describe(woken->pieces[70]), "2 put w70/x");
}

TEST_F(WatchHubTest, AQuietWatcherKeepsItsPlaceWhileTheHistoryMovesOnButNotAcrossASnapshot) {
  WatchHubOptions options;
  options.history_events = 3;
  start(options);
  auto quiet = watch("quiet/", 0);
  ASSERT_EQ(describe(next_piece(*quiet).value_or("")), "progress 0");
  // Promises shared with the callbacks, which may outlive the test's body if it fails.
  auto woken = std::make_shared<std::promise<std::string>>();
  quiet->next([woken](std::string piece) { woken->set_value(std::move(piece)); });
  // One at a time, each taken in before the next (a watcher of them sees it): more at once than
  // the history holds would be lost one by one, as after a snapshot.
  auto loud = watch("loud/", 0);
  ASSERT_EQ(describe(next_piece(*loud).value_or("")), "progress 0");
  for (raft::Index i = 1; i <= 9; ++i) {
    apply(i, set_cmd("loud/" + std::to_string(i), "v"));
    ASSERT_EQ(describe(next_piece(*loud).value_or("")),
              std::to_string(i) + " put loud/" + std::to_string(i));
  }
  EXPECT_EQ(hub->compacted_index(), 6u);
  // Nothing it follows was lost: the first change under its prefix comes, not an error.
  apply(10, set_cmd("quiet/x", "v"));
  auto future = woken->get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  const std::string piece = future.get();
  ASSERT_NE(piece.find("quiet/x"), std::string::npos) << piece;
  EXPECT_EQ(describe(piece), "10 put quiet/x");
  // A snapshot replaced the state: what changed in between is not known one by one.
  auto after = std::make_shared<std::promise<std::string>>();
  quiet->next([after](std::string piece) { after->set_value(std::move(piece)); });
  hub->restored(20);
  auto slow = after->get_future();
  ASSERT_EQ(slow.wait_for(5s), std::future_status::ready);
  const std::string ended = slow.get();
  ASSERT_NE(ended.find("slow"), std::string::npos) << ended;
  EXPECT_EQ(json::parse(ended)["resume_from"], 11) << ended;
}

TEST_F(WatchHubTest, ABlockingQueryAnswersOnAChangeToItsKeyOrAtItsDeadline) {
  start();
  apply(1, set_cmd("k", "v1"));
  std::promise<void> changed;
  ASSERT_TRUE(
      hub->wait("k", true, 1, std::chrono::steady_clock::now() + 1h, [&] { changed.set_value(); })
          .ok());
  apply(2, set_cmd("kk", "not k"));  // under "k" as a prefix, but not the key
  auto future = changed.get_future();
  EXPECT_EQ(future.wait_for(20ms), std::future_status::timeout);
  apply(3, set_cmd("k", "v2"));
  EXPECT_EQ(future.wait_for(5s), std::future_status::ready);

  // Already changed after the index it names: at once.
  std::promise<void> at_once;
  ASSERT_TRUE(
      hub->wait("", false, 2, std::chrono::steady_clock::now() + 1h, [&] { at_once.set_value(); })
          .ok());
  EXPECT_EQ(at_once.get_future().wait_for(5s), std::future_status::ready);

  // Nothing changes: the deadline answers.
  std::promise<void> timed_out;
  const auto begun = std::chrono::steady_clock::now();
  ASSERT_TRUE(hub->wait("quiet", false, 3, begun + 100ms, [&] { timed_out.set_value(); }).ok());
  EXPECT_EQ(timed_out.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_GE(std::chrono::steady_clock::now() - begun, 100ms);
}

TEST_F(WatchHubTest, TooManyWaitingAreRefused) {
  WatchHubOptions options;
  options.max_watchers = 2;
  start(options);
  auto a = watch("", 0);
  ASSERT_TRUE(hub->wait("x", true, 0, std::chrono::steady_clock::now() + 1h, [] {}).ok());
  EXPECT_EQ(hub->watch("", 0, WatchFormat::kNdjson).status().code(), Status::Code::kBusy);
  EXPECT_EQ(hub->wait("y", true, 0, std::chrono::steady_clock::now() + 1h, [] {}).code(),
            Status::Code::kBusy);
  // A stream whose connection went away leaves room.
  a->cancel();
  EXPECT_TRUE(eventually([&] { return hub->watch("", 0, WatchFormat::kNdjson).ok(); }));
}

TEST_F(WatchHubTest, OnlyTheLeaderExpiresKeysAndOnlyThoseStillAtTheirDeadline) {
  start();
  FakeReplica replica(&store);
  fsm::KvCommand ttl_put;
  ttl_put.success.push_back(fsm::KvOp{fsm::KvOp::Kind::kPut, "session", "x", 1});
  apply(1, fsm::encode_kv_command(ttl_put), now_ms());
  apply(2, set_cmd("kept", "no ttl"), now_ms());
  replica.set_last(2);
  hub->attach(&replica);
  // A follower looks, several times, and proposes nothing.
  ASSERT_TRUE(replica.wait_for([&] { return replica.status_calls_ >= 3; }));
  EXPECT_TRUE(replica.proposed_.empty());
  replica.set_role("leader");
  ASSERT_TRUE(replica.wait_for([&] { return !replica.proposed_.empty(); }));
  auto cmd = fsm::decode_kv_command(replica.proposed_.at(0));
  ASSERT_TRUE(cmd.ok());
  ASSERT_EQ(cmd->success.size(), 1u);
  EXPECT_EQ(cmd->success[0], (fsm::KvOp{fsm::KvOp::Kind::kExpire, "session", {}, 1}));
  EXPECT_EQ(*store.get("session"), std::nullopt);
  EXPECT_TRUE(store.get("kept")->has_value());
}

}  // namespace
}  // namespace raftnginx::kv
