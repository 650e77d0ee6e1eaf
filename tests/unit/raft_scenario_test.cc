// Scenarios from the Raft paper, each stepped through a small in-process cluster.
#include <gtest/gtest.h>

#include "test_network.h"

namespace raftnginx::raft {
namespace {

using testing::TestNetwork;

// Paper 5.2: a node whose election timer fires becomes candidate, wins a majority and leads.
TEST(Election, CandidateWithMajorityBecomesLeader) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(2).leader(), 1u);
  EXPECT_EQ(net.node(3).leader(), 1u);
  EXPECT_EQ(net.node(1).term(), 2u);
}

// Paper 5.2: each node times out on its own after a randomized election timeout.
TEST(Election, TimeoutElectsSomeoneWithoutHelp) {
  TestNetwork net({1, 2, 3});
  for (int i = 0; i < 30; ++i) {
    for (NodeId id : {1, 2, 3})
      net.tick(id, 1);
  }
  int leaders = 0;
  for (NodeId id : {1, 2, 3})
    leaders += net.node(id).role() == Role::kLeader;
  EXPECT_EQ(leaders, 1);
}

// Thesis 9.6: a node cut off from the others pre-votes in vain and does not raise its term, so
// it cannot depose the leader when it returns.
TEST(Election, PreVoteKeepsPartitionedNodeFromRaisingTerm) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  net.isolate(3);
  net.tick(3, 100);
  EXPECT_EQ(net.node(3).term(), 2u);
  EXPECT_EQ(net.node(3).role(), Role::kPreCandidate);
  net.clear_filters();
  net.tick(1, 1);  // a heartbeat brings 3 back
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).term(), 2u);
  EXPECT_EQ(net.node(3).role(), Role::kFollower);
  EXPECT_EQ(net.node(3).leader(), 1u);
}

// Thesis 6.2: a leader that cannot hear from a majority for an election timeout steps down.
TEST(Election, CheckQuorumMakesIsolatedLeaderStepDown) {
  TestNetwork net({1, 2, 3}, {}, [](Config& c) { c.check_quorum = true; });
  net.elect(1);
  net.isolate(1);
  net.tick(1, 21);
  EXPECT_EQ(net.node(1).role(), Role::kFollower);
  EXPECT_EQ(net.node(1).leader(), kNoNode);
}

// Paper 5.4.1: a voter refuses a candidate whose log is less up-to-date than its own.
TEST(Election, VoterRefusesCandidateWithStaleLog) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  net.isolate(3);
  ASSERT_TRUE(net.propose(1, "x").ok());
  net.clear_filters();
  net.isolate(1);
  net.node(3).campaign();
  net.stabilize();
  EXPECT_NE(net.node(3).role(), Role::kLeader);
  net.elect(2);
  EXPECT_EQ(net.node(2).role(), Role::kLeader);
}

// A forged message with a term no election could reach is refused, and changes nothing: the
// cluster keeps its leader and its term, and still commits.
TEST(HostilePeer, TermFarAheadIsRefusedAndChangesNothing) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  const Term term = net.node(1).term();
  for (Term forged : {term + kMaxTermJump + 1, kMaxTerm - 1, kMaxTerm}) {
    Message m;
    m.type = MessageType::kHeartbeatResponse;
    m.from = 2;
    m.to = 1;
    m.term = forged;
    EXPECT_EQ(net.node(1).step(m).code(), Status::Code::kProtocolViolation) << forged;
  }
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).term(), term);
  ASSERT_TRUE(net.propose(1, "still").ok());
  net.stabilize();
  EXPECT_EQ(net.node(3).status().hard_state.commit, net.node(1).status().hard_state.commit);
}

// Paper 5.3: a committed entry reaches every node's state machine.
TEST(Replication, CommittedEntryIsAppliedEverywhere) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  ASSERT_TRUE(net.propose(1, "hello").ok());
  for (NodeId id : {1, 2, 3}) {
    ASSERT_EQ(net.applied(id).commands.size(), 1u) << "node " << id;
    EXPECT_EQ(net.applied(id).commands[0].second, "hello");
  }
}

// A proposal on a follower is refused and names the leader.
TEST(Replication, FollowerRefusesProposalNamingLeader) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  auto r = net.node(2).propose("x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kNotLeader);
  EXPECT_NE(r.status().message().find("node 1"), std::string::npos);
}

// Paper Fig. 7: followers whose logs miss entries, or hold extra uncommitted ones from an old
// term, are brought in line with the new leader's log.
TEST(Replication, Figure7DivergentFollowersConverge) {
  TestNetwork net({1, 2, 3, 4, 5});
  net.elect(1);
  // Node 2 misses a run of committed entries.
  net.isolate(2);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(net.propose(1, "a" + std::to_string(i)).ok());
  net.clear_filters();
  // With 3, 4, 5 cut off, an entry reaches only 1 and 2: it can never commit.
  net.isolate(3);
  net.isolate(4);
  net.isolate(5);
  ASSERT_TRUE(net.propose(1, "lost").ok());
  net.clear_filters();
  // Node 5 leads the next term (2 refuses it: 2's log is longer) and overwrites the extra entry.
  net.isolate(1);
  net.elect(5);
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(net.propose(5, "b" + std::to_string(i)).ok());
  net.clear_filters();
  net.tick(5, 2);
  const auto& expected = net.applied(5).commands;
  ASSERT_EQ(expected.size(), 8u);
  for (NodeId id : {1, 2, 3, 4})
    EXPECT_EQ(net.applied(id).commands, expected) << "node " << id;
  for (const auto& [index, data] : net.applied(1).commands)
    EXPECT_NE(data, "lost");
}

// Paper Fig. 8: a leader must not commit an entry of an earlier term by counting replicas.
// (a) S1 leads and replicates an entry to S2 only. (b) S5 leads the next term with S3, S4 and
// appends entries nobody receives. (c) S1 leads a third term with S3, S4 and copies its old entry
// to them: a majority holds it, yet it is not committed, because S5 could still win and
// overwrite it. (d) S5 does win, and overwrites it; had S1 committed it, a committed entry would
// be lost.
TEST(Replication, Figure8EarlierTermEntryIsNotCommittedByCounting) {
  TestNetwork net({1, 2, 3, 4, 5}, {}, [](Config& c) { c.max_msg_entries = 1; });
  net.elect(1);
  // (a)
  net.add_filter([](const Message& m) { return m.from == 1 && m.to != 2; });
  auto old = net.node(1).propose("old");
  ASSERT_TRUE(old.ok());
  const Index old_entry = old->index;
  net.stabilize();
  net.clear_filters();
  net.crash(1);
  // (b)
  net.isolate(2);
  net.add_filter([](const Message& m) { return m.from == 5 && m.type == MessageType::kAppend; });
  net.elect(5);
  ASSERT_TRUE(net.node(5).propose("new").ok());
  net.stabilize();
  net.clear_filters();
  net.crash(5);
  // (c) S1's entries of its new term are dropped wherever they would be accepted.
  net.restart(1);
  net.isolate(2);
  const Term s5_term = net.storage(5).term(old_entry).value();
  net.add_filter([&net](const Message& m) {
    if (m.from != 1 || m.type != MessageType::kAppend)
      return false;
    bool carries_new_term = false;
    for (const Entry& e : m.entries)
      carries_new_term |= e.term == net.node(1).term();
    auto prev = net.storage(m.to).term(m.index);
    return carries_new_term && prev.ok() && *prev == m.log_term;
  });
  net.elect(1);
  ASSERT_EQ(net.storage(3).term(old_entry).value(), old->term);
  ASSERT_EQ(net.storage(4).term(old_entry).value(), old->term);
  EXPECT_LT(net.node(1).status().hard_state.commit, old_entry)
      << "an entry of an earlier term was committed by counting replicas";
  // (d)
  net.clear_filters();
  net.crash(1);
  net.restart(5);
  net.isolate(2);
  net.elect(5);
  EXPECT_EQ(net.storage(3).term(old_entry).value(), s5_term);
  EXPECT_EQ(net.storage(4).term(old_entry).value(), s5_term);
}

// Thesis 3.10: leadership transfer to a follower that lags catches it up first.
TEST(LeadershipTransfer, LaggingTargetCatchesUpThenLeads) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  net.isolate(3);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(net.propose(1, "x" + std::to_string(i)).ok());
  net.clear_filters();
  ASSERT_TRUE(net.node(1).transfer_leadership(3).ok());
  net.stabilize();
  EXPECT_EQ(net.node(3).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).leader(), 3u);
  EXPECT_EQ(net.applied(3).commands.size(), 5u);
  // Proposals go to the new leader and commit.
  ASSERT_TRUE(net.propose(3, "after").ok());
  EXPECT_EQ(net.applied(1).commands.back().second, "after");
}

// A transfer the target cannot complete is abandoned after an election timeout, and the
// leader takes proposals again.
TEST(LeadershipTransfer, UnreachableTargetIsAbandoned) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  net.isolate(3);
  ASSERT_TRUE(net.node(1).transfer_leadership(3).ok());
  net.stabilize();
  EXPECT_EQ(net.node(1).propose("blocked").status().code(), Status::Code::kBusy);
  net.tick(1, 10);
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_TRUE(net.propose(1, "resumed").ok());
}

// A follower far behind a compacted log receives a snapshot and then the rest.
TEST(Snapshot, FollowerBehindCompactionCatchesUpBySnapshot) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  net.isolate(3);
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(net.propose(1, "x" + std::to_string(i)).ok());
  net.compact(1);
  net.clear_filters();
  ASSERT_TRUE(net.propose(1, "after-snapshot").ok());
  net.tick(1, 3);
  EXPECT_EQ(net.applied(3).commands, net.applied(1).commands);
  EXPECT_GT(net.storage(3).snapshot()->index, 0u);
}

// A crashed node restarts from its storage with its state machine rebuilt from snapshot plus
// log, and applies nothing twice.
TEST(Restart, NodeResumesFromStorage) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(net.propose(1, "x" + std::to_string(i)).ok());
  net.compact(2);
  ASSERT_TRUE(net.propose(1, "y").ok());
  net.crash(2);
  net.restart(2);
  net.tick(1, 2);
  EXPECT_EQ(net.applied(2).commands, net.applied(1).commands);
  EXPECT_EQ(net.node(2).term(), 2u);
}

}  // namespace
}  // namespace raftnginx::raft

namespace raftnginx::raft {
namespace {

// A leader without a quorum stops accepting proposals once its uncommitted tail reaches the
// limit, and accepts them again when its followers return and the tail commits.
TEST(Replication, UncommittedTailIsBounded) {
  testing::TestNetwork net({1, 2, 3}, {}, [](Config& c) { c.max_uncommitted_bytes = 1000; });
  net.elect(1);
  net.isolate(1);
  int accepted = 0;
  Status last;
  for (int i = 0; i < 100 && last.ok(); ++i) {
    last = net.node(1).propose(std::string(100, 'x')).status();
    accepted += last.ok();
  }
  EXPECT_EQ(last.code(), Status::Code::kBusy);
  EXPECT_LT(accepted, 10);
  net.clear_filters();
  net.tick(1, 2);
  EXPECT_TRUE(net.propose(1, "accepted again").ok());
  EXPECT_EQ(net.applied(2).commands.back().second, "accepted again");
}

}  // namespace
}  // namespace raftnginx::raft
