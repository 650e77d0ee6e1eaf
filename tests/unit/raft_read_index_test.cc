// ReadIndex (thesis 6.4): linearizable reads without writing to the log.
#include <gtest/gtest.h>

#include "test_network.h"

namespace raftnginx::raft {
namespace {

using testing::TestNetwork;

TEST(ReadIndex, LeaderConfirmsWithOneHeartbeatRoundForABatch) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  ASSERT_TRUE(net.propose(1, "w").ok());
  net.clear_delivered();
  ASSERT_TRUE(net.node(1).read_index("r1").ok());
  ASSERT_TRUE(net.node(1).read_index("r2").ok());
  ASSERT_TRUE(net.node(1).read_index("r3").ok());
  net.stabilize();
  size_t heartbeats = 0;
  for (const Message& m : net.delivered())
    heartbeats += m.type == MessageType::kHeartbeat;
  EXPECT_EQ(heartbeats, 2u) << "one round to the two followers confirms all three reads";
  const Index commit = net.node(1).status().hard_state.commit;
  ASSERT_EQ(net.read_states(1).size(), 3u);
  EXPECT_EQ(net.read_states(1)[0], (ReadState{commit, "r1"}));
  EXPECT_EQ(net.read_states(1)[2], (ReadState{commit, "r3"}));
}

TEST(ReadIndex, FollowerGetsLeadersCommitIndex) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  ASSERT_TRUE(net.propose(1, "w").ok());
  ASSERT_TRUE(net.node(3).read_index("f").ok());
  net.stabilize();
  ASSERT_EQ(net.read_states(3).size(), 1u);
  EXPECT_EQ(net.read_states(3)[0].index, net.node(1).status().hard_state.commit);
  EXPECT_GE(net.applied(3).applied, net.read_states(3)[0].index);
}

// A leader cut off from the majority must not answer: a new leader may have taken writes.
TEST(ReadIndex, IsolatedLeaderNeverConfirms) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  net.isolate(1);
  ASSERT_TRUE(net.node(1).read_index("stale?").ok());
  net.tick(1, 5);
  EXPECT_TRUE(net.read_states(1).empty());
}

// Until its no-op commits, a new leader's commit index may miss committed entries: reads wait.
TEST(ReadIndex, NewLeaderWaitsForItsFirstCommit) {
  TestNetwork net({1, 2, 3});
  net.add_filter([](const Message& m) { return m.type == MessageType::kAppendResponse; });
  net.elect(1);
  ASSERT_TRUE(net.node(1).read_index("early").ok());
  net.stabilize();
  EXPECT_TRUE(net.read_states(1).empty());
  net.clear_filters();
  net.tick(1, 1);
  ASSERT_EQ(net.read_states(1).size(), 1u);
  EXPECT_EQ(net.read_states(1)[0].index, net.node(1).status().hard_state.commit);
}

TEST(ReadIndex, SingleVoterAnswersAtOnce) {
  TestNetwork net({1});
  net.elect(1);
  ASSERT_TRUE(net.node(1).read_index("solo").ok());
  net.stabilize();
  ASSERT_EQ(net.read_states(1).size(), 1u);
}

TEST(ReadIndex, NoLeaderIsAnError) {
  TestNetwork net({1, 2, 3});
  EXPECT_EQ(net.node(2).read_index("x").code(), Status::Code::kNotLeader);
}

}  // namespace
}  // namespace raftnginx::raft
