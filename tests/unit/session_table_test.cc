// The node's client sessions: what is remembered, when it is forgotten (the same on every node,
// from the log alone), and that a stored table reads back whole or not at all.
#include "node/session_table.h"

#include <gtest/gtest.h>

namespace raftnginx::node {
namespace {

using namespace std::chrono_literals;

SessionTable::Record rec(raft::Index index, uint64_t time_ms, std::string value = "",
                         Status status = Status()) {
  return SessionTable::Record{index, time_ms, index * 7, true,
                              fsm::ApplyResult{std::move(status), std::move(value)}};
}

TEST(SessionTable, ForgetsIdsPastTheEntryWindow) {
  SessionTable t(SessionLimits{10, 1h, 1 << 20});
  t.record("a", rec(5, 0));
  t.record("b", rec(8, 0));
  t.evict(15, 0);
  EXPECT_NE(t.find("a"), nullptr);  // 5 + 10 is not older than 15
  t.evict(16, 0);
  EXPECT_EQ(t.find("a"), nullptr);
  EXPECT_NE(t.find("b"), nullptr);
  EXPECT_EQ(t.size(), 1u);
}

TEST(SessionTable, ForgetsIdsOlderThanTheAgeLimitByTheLeadersClock) {
  SessionTable t(SessionLimits{1000000, 60s, 1 << 20});
  t.record("old", rec(1, 1'000'000));
  t.record("new", rec(2, 1'050'000));
  t.evict(3, 1'060'000);
  EXPECT_NE(t.find("old"), nullptr);  // exactly 60 s old
  t.evict(4, 1'060'001);
  EXPECT_EQ(t.find("old"), nullptr);
  EXPECT_NE(t.find("new"), nullptr);
}

TEST(SessionTable, BoundedInBytesOldestFirst) {
  SessionTable t(SessionLimits{1000000, 1h, 1000});
  for (raft::Index i = 1; i <= 20; ++i)
    t.record("id-" + std::to_string(i), rec(i, 0, std::string(100, 'x')));
  t.evict(21, 0);
  EXPECT_LE(t.bytes(), 1000u);
  EXPECT_EQ(t.find("id-1"), nullptr);
  EXPECT_NE(t.find("id-20"), nullptr);
  // Whatever is left, the newest ids are kept.
  size_t kept = 0;
  for (raft::Index i = 1; i <= 20; ++i)
    kept += t.find("id-" + std::to_string(i)) != nullptr;
  for (raft::Index i = 21 - kept; i <= 20; ++i)
    EXPECT_NE(t.find("id-" + std::to_string(i)), nullptr) << i;
}

TEST(SessionTable, ARecordedAgainIdKeepsOnlyItsNewerRecord) {
  SessionTable t(SessionLimits{10, 1h, 1 << 20});
  t.record("a", rec(1, 0, "first"));
  const uint64_t one = t.bytes();
  t.record("a", rec(9, 0, "again"));
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.bytes(), one);
  t.evict(12, 0);  // the old record at 1 would have gone by now; the new one stays
  ASSERT_NE(t.find("a"), nullptr);
  EXPECT_EQ(t.find("a")->result.value, "again");
}

TEST(SessionTable, ReadsBackWholeAndRefusesDamage) {
  SessionTable t;
  t.record("ok", rec(1, 10, "v"));
  t.record("bad", rec(2, 20, "", Status::invalid_argument("malformed")));
  t.record("reuse", rec(3, 30, "", Status::conflict("used before")));
  SessionTable::Record unknown = rec(4, 40);
  unknown.result_known = false;
  t.record("unknown", unknown);
  const std::string data = t.serialize();
  auto back = SessionTable::parse(data, SessionLimits{});
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->size(), 4u);
  EXPECT_EQ(back->bytes(), t.bytes());
  EXPECT_EQ(back->find("ok")->result.value, "v");
  EXPECT_EQ(back->find("ok")->command_hash, 7u);
  EXPECT_EQ(back->find("bad")->result.status.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(back->find("reuse")->result.status.code(), Status::Code::kConflict);
  EXPECT_FALSE(back->find("unknown")->result_known);
  // Cut short anywhere, or with a byte changed in the counts, it is refused, never misread.
  for (size_t n = 0; n < data.size(); ++n)
    EXPECT_FALSE(SessionTable::parse(data.substr(0, n), SessionLimits{}).ok()) << n;
  std::string huge_count = data;
  huge_count[8] = '\x7f';
  EXPECT_FALSE(SessionTable::parse(huge_count, SessionLimits{}).ok());
  SessionTable one;
  one.record("x", rec(1, 1));
  std::string single = one.serialize();
  single[single.size() - 9] = '\x09';  // the result's status code: kIOError is not a result
  EXPECT_FALSE(SessionTable::parse(single, SessionLimits{}).ok());
}

}  // namespace
}  // namespace raftnginx::node
