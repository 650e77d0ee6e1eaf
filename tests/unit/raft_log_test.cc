// The log's rules in isolation: append, conflict, commit, and the stable/unstable split.
#include "raft/raft_log.h"

#include <gtest/gtest.h>

#include "raft/memory_storage.h"

namespace raftnginx::raft {
namespace {

std::vector<Entry> entries_with_terms(Index first, std::vector<Term> terms) {
  std::vector<Entry> out;
  for (Term t : terms)
    out.push_back(Entry{t, first++, EntryType::kNormal, "e"});
  return out;
}

std::vector<Term> terms_of(const RaftLog& log) {
  std::vector<Term> out;
  for (Index i = log.first_index(); i <= log.last_index(); ++i)
    out.push_back(*log.term(i));
  return out;
}

TEST(RaftLog, AppendAfterMatchingPrevious) {
  MemoryStorage storage;
  RaftLog log(storage, 0, 0);
  ASSERT_EQ(log.maybe_append(0, 0, 0, entries_with_terms(1, {1, 1, 2})), 3u);
  EXPECT_EQ(terms_of(log), (std::vector<Term>{1, 1, 2}));
  // prevLogTerm mismatch: refused, nothing changes.
  EXPECT_FALSE(log.maybe_append(3, 3, 0, entries_with_terms(4, {3})).has_value());
  EXPECT_EQ(log.last_index(), 3u);
}

TEST(RaftLog, ConflictingSuffixIsReplaced) {
  MemoryStorage storage;
  RaftLog log(storage, 0, 0);
  ASSERT_TRUE(log.maybe_append(0, 0, 0, entries_with_terms(1, {1, 1, 1, 1})));
  ASSERT_EQ(log.maybe_append(1, 1, 0, entries_with_terms(2, {1, 2})), 3u);
  EXPECT_EQ(terms_of(log), (std::vector<Term>{1, 1, 2}));
}

TEST(RaftLog, DuplicateAppendKeepsLongerLog) {
  MemoryStorage storage;
  RaftLog log(storage, 0, 0);
  ASSERT_TRUE(log.maybe_append(0, 0, 0, entries_with_terms(1, {1, 1, 1})));
  // A delayed copy of an earlier message must not truncate entries that matched.
  ASSERT_EQ(log.maybe_append(0, 0, 0, entries_with_terms(1, {1})), 1u);
  EXPECT_EQ(log.last_index(), 3u);
}

TEST(RaftLog, CommitFollowsLeaderButNotPastNewEntries) {
  MemoryStorage storage;
  RaftLog log(storage, 0, 0);
  ASSERT_TRUE(log.maybe_append(0, 0, 5, entries_with_terms(1, {1, 1})));
  EXPECT_EQ(log.committed(), 2u);
}

TEST(RaftLog, LeaderCommitsOnlyEntriesOfItsTerm) {
  MemoryStorage storage;
  RaftLog log(storage, 0, 0);
  log.append(entries_with_terms(1, {1, 2}));
  EXPECT_FALSE(log.maybe_commit(1, 2));
  EXPECT_EQ(log.committed(), 0u);
  EXPECT_TRUE(log.maybe_commit(2, 2));
  EXPECT_EQ(log.committed(), 2u);
}

TEST(RaftLog, FindConflictByTermSkipsWholeTerms) {
  MemoryStorage storage;
  RaftLog log(storage, 0, 0);
  log.append(entries_with_terms(1, {1, 1, 3, 3, 3, 5}));
  EXPECT_EQ(log.find_conflict_by_term(6, 4), std::make_pair(Index{5}, Term{3}));
  EXPECT_EQ(log.find_conflict_by_term(6, 2), std::make_pair(Index{2}, Term{1}));
  EXPECT_EQ(log.find_conflict_by_term(10, 9), std::make_pair(Index{6}, Term{5}));
  EXPECT_EQ(log.find_conflict_by_term(6, 0), std::make_pair(Index{0}, Term{0}));
}

TEST(RaftLog, SliceSpansStableAndUnstableWithByteLimit) {
  MemoryStorage storage;
  storage.append(entries_with_terms(1, {1, 1}));
  RaftLog log(storage, 0, 0);
  log.append(entries_with_terms(3, {1, 1}));
  auto all = log.slice(1, 5, UINT64_MAX);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
  auto limited = log.slice(1, 5, 3 * entry_size(all->front()));
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->size(), 3u);
  auto one = log.slice(1, 5, 1);
  EXPECT_EQ(one->size(), 1u) << "at least one entry, even over the limit";
}

TEST(RaftLog, StableToIgnoresEntriesReplacedMeanwhile) {
  MemoryStorage storage;
  RaftLog log(storage, 0, 0);
  log.append(entries_with_terms(1, {1, 1}));
  // A new leader overwrote entry 2 before the runtime reported the old one durable.
  ASSERT_TRUE(log.maybe_append(1, 1, 0, entries_with_terms(2, {2})));
  log.stable_to(2, 1);
  EXPECT_EQ(log.unstable_entries().size(), 2u);
  log.stable_to(2, 2);
  EXPECT_TRUE(log.unstable_entries().empty());
}

TEST(RaftLog, CompactedRangeIsReported) {
  MemoryStorage storage;
  storage.append(entries_with_terms(1, {1, 1, 1, 1}));
  ASSERT_TRUE(storage.create_snapshot(3, ConfState{{1}, {}}).ok());
  RaftLog log(storage, 3, 3);
  EXPECT_EQ(log.first_index(), 4u);
  EXPECT_EQ(*log.term(3), 1u);
  EXPECT_EQ(log.term(2).status().code(), Status::Code::kCompacted);
  EXPECT_EQ(log.slice(2, 4, UINT64_MAX).status().code(), Status::Code::kCompacted);
}

TEST(MemoryStorage, TrailingEntriesSurviveCompaction) {
  MemoryStorage storage;
  storage.append(entries_with_terms(1, {1, 1, 1, 1, 1}));
  ASSERT_TRUE(storage.create_snapshot(4, ConfState{{1}, {}}, 2).ok());
  EXPECT_EQ(storage.first_index(), 3u);
  EXPECT_EQ(storage.snapshot()->index, 4u);
  EXPECT_TRUE(storage.entries(3, 6, UINT64_MAX).ok());
}

TEST(ConfChangeEncoding, RoundTripsAndRejectsGarbage) {
  ConfChange cc{ConfChangeType::kAddLearner, 42, "10.0.0.1:12000"};
  auto back = decode_conf_change(encode_conf_change(cc));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, cc);
  EXPECT_FALSE(decode_conf_change("x").ok());
  std::string bad = encode_conf_change(cc);
  bad[0] = 9;
  EXPECT_EQ(decode_conf_change(bad).status().code(), Status::Code::kNotSupported);
}

}  // namespace
}  // namespace raftnginx::raft
