// Majority arithmetic, checked against a naive count over random inputs.
#include "raft/quorum.h"

#include <gtest/gtest.h>

#include "raft/random.h"

namespace raftnginx::raft {
namespace {

TEST(Quorum, CommittedIndexIsWhatAMajorityHas) {
  EXPECT_EQ(majority_value({1, 2, 3}, {5, 3, 1}), 3u);
  EXPECT_EQ(majority_value({1, 2, 3, 4}, {5, 5, 1, 1}), 1u);
  EXPECT_EQ(majority_value({1, 2, 3, 4, 5}, {9, 8}), 0u);
  EXPECT_EQ(majority_value({}, {}), 0u);
}

TEST(Quorum, MatchesNaiveCountOnRandomInputs) {
  Random rng(7);
  for (int round = 0; round < 2000; ++round) {
    const size_t n = 1 + rng.uniform(7);
    std::set<NodeId> voters;
    std::vector<uint64_t> acked;
    for (size_t i = 0; i < n; ++i) {
      voters.insert(i + 1);
      acked.push_back(rng.uniform(10));
    }
    // Naive: the largest v that at least a majority has reached.
    uint64_t naive = 0;
    for (uint64_t v = 0; v < 10; ++v) {
      size_t have = 0;
      for (uint64_t a : acked)
        have += a >= v;
      if (have > n / 2)
        naive = v;
    }
    ASSERT_EQ(majority_value(voters, acked), naive);
  }
}

TEST(Quorum, VoteOutcome) {
  EXPECT_EQ(majority_vote({1, 2, 3}, {{1, true}}), VoteResult::kPending);
  EXPECT_EQ(majority_vote({1, 2, 3}, {{1, true}, {2, true}}), VoteResult::kWon);
  EXPECT_EQ(majority_vote({1, 2, 3}, {{1, true}, {2, false}, {3, false}}), VoteResult::kLost);
  // Votes from non-voters (a learner, a removed node) do not count.
  EXPECT_EQ(majority_vote({1, 2, 3}, {{1, true}, {7, true}}), VoteResult::kPending);
}

}  // namespace
}  // namespace raftnginx::raft
