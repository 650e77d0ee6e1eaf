// A single node against its disk: a failed fsync stops writes and loses nothing acknowledged;
// a restart with a durable state machine re-applies nothing.
#include <gtest/gtest.h>

#include <future>

#include "fault_env.h"
#include "fsm/kv_command.h"
#include "fsm/rocksdb_kv.h"
#include "kv_commands.h"
#include "local_transport.h"
#include "node/node.h"
#include "temp_dir.h"

namespace raftnginx::node {
namespace {

using namespace std::chrono_literals;

using raftnginx::testing::set_cmd;

struct SingleNode {
  SingleNode(const std::string& dir, storage::Env* env,
             std::chrono::seconds snapshot_interval = std::chrono::seconds(0),
             uint64_t segment_bytes = defaults::kSegmentBytes) {
    NodeOptions o;
    o.segment_bytes = segment_bytes;
    o.id = 1;
    o.data_dir = dir;
    o.env = env;
    o.tick = 10ms;
    o.election_ticks = 5;
    o.heartbeat_ticks = 1;
    o.bootstrap = cluster::Membership{raft::ConfState{{1}, {}}, {}, {}};
    o.snapshot_interval = snapshot_interval;
    EXPECT_TRUE(env->create_dirs(dir).ok());
    auto kv = fsm::RocksDbKv::open(dir + "/kv");
    EXPECT_TRUE(kv.ok());
    auto n = Node::start(o, std::move(kv).value(), &transport);
    EXPECT_TRUE(n.ok()) << n.status().to_string();
    node = std::move(n).value();
  }

  Result<Outcome> write(const std::string& command) {
    for (int attempt = 0; attempt < 200; ++attempt) {
      std::promise<Result<Outcome>> done;
      node->propose(command, {}, [&](Result<Outcome> r) { done.set_value(std::move(r)); });
      auto r = done.get_future().get();
      if (r.ok() || r.status().code() != Status::Code::kNotLeader)
        return r;
      std::this_thread::sleep_for(10ms);  // not elected yet
    }
    return Status::not_leader("never elected");
  }

  std::optional<std::string> get(const std::string& key) {
    auto record = *static_cast<fsm::KvStore&>(node->state_machine()).get(key);
    return record ? std::optional<std::string>(record->value) : std::nullopt;
  }

  transport::LocalHub hub;
  transport::LocalTransport transport{&hub};
  std::unique_ptr<Node> node;
};

TEST(NodeDurability, FailedFsyncStopsWritesAndLosesNothingAcknowledged) {
  raftnginx::testing::TempDir tmp;
  storage::testing::FaultEnv env;
  {
    SingleNode n(tmp.path(), &env);
    ASSERT_TRUE(n.write(set_cmd({{"acknowledged", "yes"}})).ok());
    env.fail_syncs(1);
    auto failed = n.write(set_cmd({{"never", "acknowledged"}}));
    ASSERT_FALSE(failed.ok());
    // The entry may have reached other nodes before the leader's own fsync failed: whether it
    // commits is not known, and the client is told so, with the cause.
    EXPECT_EQ(failed.status().code(), Status::Code::kOutcomeUnknown);
    EXPECT_NE(failed.status().message().find("fdatasync"), std::string::npos);
    EXPECT_EQ(n.node->status().failure.code(), Status::Code::kIOError);
    // Once failed, the node takes no more writes, even if the disk recovers.
    EXPECT_EQ(n.write(set_cmd({{"after", "failure"}})).status().code(), Status::Code::kIOError);
  }
  env.lose_unsynced();
  SingleNode restarted(tmp.path(), storage::Env::posix());
  ASSERT_TRUE(restarted.write(set_cmd({{"after", "restart"}})).ok());
  EXPECT_EQ(restarted.get("acknowledged"), "yes");
}

// Records go into the space a segment was given when it was made: the disk fills up when the
// next segment cannot be made, and the node stops taking writes then.
TEST(NodeDurability, FullDiskStopsWrites) {
  raftnginx::testing::TempDir tmp;
  storage::testing::FaultEnv env;
  SingleNode n(tmp.path(), &env, std::chrono::seconds(0), /*segment_bytes=*/16384);
  ASSERT_TRUE(n.write(set_cmd({{"k", "v"}})).ok());
  env.disk_full_after(16);
  auto failed = n.write(set_cmd({{"big", std::string(32768, 'x')}}));
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("No space left"), std::string::npos);
}

// 100,000 keys in RocksDB: a restart hands the state machine nothing it already applied.
TEST(NodeDurability, RestartWithRocksDbReappliesNothing) {
  raftnginx::testing::TempDir tmp;
  raft::Index applied_before = 0;
  {
    SingleNode n(tmp.path(), storage::Env::posix());
    for (int batch = 0; batch < 100; ++batch) {
      std::vector<std::pair<std::string, std::string>> pairs;
      for (int i = 0; i < 1000; ++i)
        pairs.emplace_back("key-" + std::to_string(batch * 1000 + i), "value");
      ASSERT_TRUE(n.write(set_cmd(std::move(pairs))).ok());
    }
    applied_before = n.node->state_machine().applied_index();
  }
  const auto start = std::chrono::steady_clock::now();
  SingleNode n(tmp.path(), storage::Env::posix());
  const auto ready = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(n.node->state_machine().applied_index(), applied_before);
  EXPECT_EQ(n.get("key-99999"), "value");
  ASSERT_TRUE(n.write(set_cmd({{"after", "restart"}})).ok());
  EXPECT_EQ(n.node->status().entries_applied, 1u) << "only the new write reached the backend";
  std::printf("restart with 100000 keys: started in %.1f ms\n",
              std::chrono::duration<double, std::milli>(ready).count());
}

// The time trigger: a snapshot is taken after the interval although few entries were applied.
TEST(NodeDurability, SnapshotIntervalTakesSnapshotOfASmallLog) {
  raftnginx::testing::TempDir tmp;
  SingleNode n(tmp.path(), storage::Env::posix(), std::chrono::seconds(1));
  ASSERT_TRUE(n.write(set_cmd({{"k", "v"}})).ok());
  for (int i = 0; i < 300 && n.node->status().snapshots_taken == 0; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(n.node->status().snapshots_taken, 1u);
  EXPECT_GT(n.node->status().snapshot_index, 0u);
}

// Every call gets its answer exactly once, also after the node stopped.
TEST(NodeDurability, CallsAfterStopAreAnsweredNotDropped) {
  raftnginx::testing::TempDir tmp;
  SingleNode n(tmp.path(), storage::Env::posix());
  ASSERT_TRUE(n.write(set_cmd({{"k", "v"}})).ok());
  n.node->stop();
  int answers = 0;
  n.node->propose(set_cmd({{"late", "1"}}), {}, [&](Result<Outcome> r) {
    ++answers;
    EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
  });
  n.node->read_barrier([&](Status s) {
    ++answers;
    EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  });
  EXPECT_EQ(answers, 2);
}

}  // namespace
}  // namespace raftnginx::node
