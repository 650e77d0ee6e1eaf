// Membership changes (thesis 4.1): one server at a time, learners, removal.
#include <gtest/gtest.h>

#include "test_network.h"

namespace raftnginx::raft {
namespace {

using testing::TestNetwork;

ConfChange add_voter(NodeId id) {
  return ConfChange{ConfChangeType::kAddVoter, id, {}};
}
ConfChange add_learner(NodeId id) {
  return ConfChange{ConfChangeType::kAddLearner, id, {}};
}
ConfChange remove_node(NodeId id) {
  return ConfChange{ConfChangeType::kRemoveNode, id, {}};
}

TEST(Membership, NewVoterJoinsAndCountsTowardQuorum) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  ASSERT_TRUE(net.propose(1, "before").ok());
  net.add_empty_node(4);
  ASSERT_TRUE(net.node(1).change_membership(add_voter(4)).ok());
  net.stabilize();
  EXPECT_EQ(net.node(1).conf().voters, (std::set<NodeId>{1, 2, 3, 4}));
  EXPECT_EQ(net.node(4).conf().voters, (std::set<NodeId>{1, 2, 3, 4}));
  EXPECT_EQ(net.applied(4).commands, net.applied(1).commands);
  // With 4 voters, two down means no majority: a proposal does not commit.
  net.isolate(2);
  net.isolate(3);
  const size_t before = net.applied(1).commands.size();
  ASSERT_TRUE(net.propose(1, "needs-three").ok());
  EXPECT_EQ(net.applied(1).commands.size(), before);
  net.clear_filters();
  net.tick(1, 1);
  EXPECT_EQ(net.applied(1).commands.size(), before + 1);
}

TEST(Membership, OneChangeAtATime) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  net.isolate(2);
  net.isolate(3);
  ASSERT_TRUE(net.node(1).change_membership(add_learner(4)).ok());
  auto second = net.node(1).change_membership(add_learner(5));
  EXPECT_EQ(second.status().code(), Status::Code::kBusy);
}

// Ongaro's 2015 fix for single-server changes: a new leader commits an entry of its own term
// before it accepts a membership change.
TEST(Membership, NewLeaderCommitsOwnEntryBeforeChange) {
  TestNetwork net({1, 2, 3});
  net.isolate(1);
  net.node(1).campaign();
  net.stabilize();
  net.clear_filters();
  // Make 1 leader while its no-op cannot commit.
  net.add_filter([](const Message& m) { return m.type == MessageType::kAppendResponse; });
  net.elect(1);
  EXPECT_EQ(net.node(1).change_membership(add_learner(4)).status().code(), Status::Code::kBusy);
  net.clear_filters();
  net.tick(1, 1);
  EXPECT_TRUE(net.node(1).change_membership(add_learner(4)).ok());
}

TEST(Membership, InvalidChangesAreRefused) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  EXPECT_EQ(net.node(1).change_membership(add_voter(2)).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(net.node(1).change_membership(remove_node(9)).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(net.node(2).change_membership(add_voter(4)).status().code(), Status::Code::kNotLeader);
}

// A member that moved keeps its place: the update changes its context, never the membership.
TEST(Membership, UpdateNodeKeepsMembershipAndNeedsAMember) {
  const ConfState conf{{1, 2}, {3}};
  auto moved = apply_conf_change(conf, ConfChange{ConfChangeType::kUpdateNode, 3, "new:1"});
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, conf);
  EXPECT_EQ(
      apply_conf_change(conf, ConfChange{ConfChangeType::kUpdateNode, 4, "x"}).status().code(),
      Status::Code::kInvalidArgument);
  const ConfChange cc{ConfChangeType::kUpdateNode, 2, "raft=h:1"};
  auto decoded = decode_conf_change(encode_conf_change(cc));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, cc);
}

// A learner receives the log but never campaigns, and its acknowledgements never commit.
TEST(Membership, LearnerReplicatesButNeverVotesOrCampaigns) {
  TestNetwork net({1, 2, 3}, {4});
  net.elect(1);
  ASSERT_TRUE(net.propose(1, "x").ok());
  EXPECT_EQ(net.applied(4).commands, net.applied(1).commands);
  // A learner never starts an election, however long it waits.
  net.isolate(4);
  net.tick(4, 100);
  EXPECT_EQ(net.node(4).role(), Role::kFollower);
  EXPECT_EQ(net.node(4).term(), 2u);
  net.clear_filters();
  // The leader plus the learner are not a majority of {1, 2, 3}.
  net.isolate(2);
  net.isolate(3);
  const size_t before = net.applied(1).commands.size();
  ASSERT_TRUE(net.propose(1, "y").ok());
  EXPECT_EQ(net.applied(1).commands.size(), before);
  EXPECT_EQ(net.applied(4).commands.size(), before);
}

TEST(Membership, PromotedLearnerCountsTowardQuorum) {
  TestNetwork net({1, 2}, {3});
  net.elect(1);
  ASSERT_TRUE(net.node(1).change_membership(add_voter(3)).ok());
  net.stabilize();
  EXPECT_EQ(net.node(3).conf().voters, (std::set<NodeId>{1, 2, 3}));
  // 1 and 3 are now a majority without 2.
  net.isolate(2);
  ASSERT_TRUE(net.propose(1, "z").ok());
  EXPECT_EQ(net.applied(3).commands.back().second, "z");
}

// Thesis 4.2.3: a removed server that times out must not disrupt the cluster. Pre-vote and the
// leader lease both stop it; its term never rises.
TEST(Membership, RemovedNodeCannotDisrupt) {
  TestNetwork net({1, 2, 3}, {}, [](Config& c) { c.check_quorum = true; });
  net.elect(1);
  ASSERT_TRUE(net.node(1).change_membership(remove_node(3)).ok());
  net.stabilize();
  ASSERT_EQ(net.node(1).conf().voters, (std::set<NodeId>{1, 2}));
  // Node 3 may not have learned of its removal; make sure it has not, then let it time out.
  for (int i = 0; i < 50; ++i) {
    net.tick(3, 1);
    net.tick(1, 1);
  }
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).term(), 2u);
  EXPECT_EQ(net.node(2).term(), 2u);
  ASSERT_TRUE(net.propose(1, "still-serving").ok());
  EXPECT_EQ(net.applied(2).commands.back().second, "still-serving");
}

TEST(Membership, LeaderRemovingItselfStepsDownAndOthersElect) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  ASSERT_TRUE(net.node(1).change_membership(remove_node(1)).ok());
  net.stabilize();
  EXPECT_NE(net.node(1).role(), Role::kLeader);
  net.elect(2);
  ASSERT_TRUE(net.propose(2, "new-era").ok());
  EXPECT_EQ(net.applied(3).commands.back().second, "new-era");
}

TEST(Membership, JoiningNodeCatchesUpBySnapshot) {
  TestNetwork net({1, 2, 3});
  net.elect(1);
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(net.propose(1, "k" + std::to_string(i)).ok());
  net.compact(1);
  net.add_empty_node(4);
  ASSERT_TRUE(net.node(1).change_membership(add_learner(4)).ok());
  net.stabilize();
  net.tick(1, 2);
  EXPECT_EQ(net.applied(4).commands, net.applied(1).commands);
  EXPECT_TRUE(net.node(4).conf().learners.count(4));
}

}  // namespace
}  // namespace raftnginx::raft

namespace raftnginx::raft {
namespace {

// A single core driven by hand-made messages from a leader (node 1, term 2), for cases that
// depend on when the runtime acknowledges a Ready.
class LoneFollower {
 public:
  LoneFollower() : storage_(ConfState{{1, 2, 3}, {}}) {
    Config c;
    c.id = 3;
    node_ = std::move(RawNode::create(c, storage_)).value();
    handle_ready();  // applies the bootstrap membership
  }

  RawNode& node() { return *node_; }

  void append_from_leader(std::vector<Entry> entries, Index commit) {
    Message m;
    m.type = MessageType::kAppend;
    m.from = 1;
    m.to = 3;
    m.term = 2;
    m.index = storage_.last_index();
    m.log_term = *storage_.term(m.index);
    m.entries = std::move(entries);
    m.commit = commit;
    ASSERT_TRUE(node_->step(std::move(m)).ok());
  }

  void snapshot_from_leader(SnapshotMeta meta) {
    Message m;
    m.type = MessageType::kSnapshot;
    m.from = 1;
    m.to = 3;
    m.term = 2;
    m.snapshot = std::move(meta);
    ASSERT_TRUE(node_->step(std::move(m)).ok());
  }

  // Persists a Ready; applying its entries happens when the caller calls advance().
  Ready take_ready() {
    Ready rd = node_->ready();
    if (rd.snapshot)
      storage_.apply_snapshot(*rd.snapshot);
    storage_.append(rd.entries);
    if (rd.hard_state)
      storage_.set_hard_state(*rd.hard_state);
    return rd;
  }

  void handle_ready() {
    take_ready();
    node_->advance();
  }

  Index next_index() const { return storage_.last_index() + 1; }

 private:
  MemoryStorage storage_;
  std::unique_ptr<RawNode> node_;
};

Entry conf_entry(Index index, ConfChange cc) {
  return Entry{2, index, EntryType::kConfChange, encode_conf_change(cc)};
}

// Two membership changes apart, majorities need not overlap: a node that knows a change is
// committed must apply it before it counts votes again.
TEST(Membership, NoCampaignWithCommittedChangeNotYetApplied) {
  LoneFollower f;
  const Index i = f.next_index();
  f.append_from_leader({Entry{2, i, EntryType::kNormal, {}}, conf_entry(i + 1, add_voter(4))},
                       i + 1);
  f.node().campaign();
  EXPECT_EQ(f.node().role(), Role::kFollower) << "campaigned before applying a committed change";
  Ready rd = f.take_ready();
  ASSERT_EQ(rd.committed_entries.size(), 2u);
  f.node().campaign();
  EXPECT_EQ(f.node().role(), Role::kFollower) << "campaigned while the change was being applied";
  f.node().advance();
  EXPECT_EQ(f.node().conf().voters, (std::set<NodeId>{1, 2, 3, 4}));
  f.node().campaign();
  EXPECT_EQ(f.node().role(), Role::kPreCandidate);
}

// Entries handed out before a snapshot arrived apply to the membership before it; the
// snapshot's membership replaces the result only when the snapshot is installed.
TEST(Membership, SnapshotArrivingBeforeAdvanceKeepsMembershipOrder) {
  LoneFollower f;
  const Index i = f.next_index();
  f.append_from_leader({Entry{2, i, EntryType::kNormal, {}}, conf_entry(i + 1, remove_node(2))},
                       i + 1);
  Ready rd = f.take_ready();
  ASSERT_EQ(rd.committed_entries.size(), 2u);
  // Meanwhile the leader moved on, re-added node 2 and compacted its log.
  f.snapshot_from_leader(SnapshotMeta{i + 20, 2, ConfState{{1, 2, 3}, {}}});
  f.node().advance();
  EXPECT_EQ(f.node().conf().voters, (std::set<NodeId>{1, 3}));
  Ready with_snapshot = f.take_ready();
  ASSERT_TRUE(with_snapshot.snapshot.has_value());
  f.node().advance();
  EXPECT_EQ(f.node().conf().voters, (std::set<NodeId>{1, 2, 3}));
}

}  // namespace
}  // namespace raftnginx::raft
