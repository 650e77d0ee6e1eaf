// The wire encoding of messages: exact round trips, and no trust in a peer's bytes.
#include "raft/encoding.h"

#include <gtest/gtest.h>

#include "raft/random.h"

namespace raftnginx::raft {
namespace {

Message full_message() {
  Message m;
  m.type = MessageType::kSnapshot;
  m.from = 3;
  m.to = 1;
  m.term = 7;
  m.index = 42;
  m.log_term = 6;
  m.commit = 40;
  m.reject = true;
  m.transfer = true;
  m.reject_hint = 39;
  m.read_seq = 12;
  m.context = std::string("ctx\0bytes", 9);
  m.entries = {Entry{6, 41, EntryType::kNormal, "a"}, Entry{7, 42, EntryType::kConfChange, ""}};
  m.snapshot = SnapshotMeta{30, 5, ConfState{{1, 2, 3}, {9}}};
  return m;
}

bool same(const Message& a, const Message& b) {
  return a.type == b.type && a.from == b.from && a.to == b.to && a.term == b.term &&
         a.index == b.index && a.log_term == b.log_term && a.commit == b.commit &&
         a.reject == b.reject && a.transfer == b.transfer && a.reject_hint == b.reject_hint &&
         a.read_seq == b.read_seq && a.context == b.context && a.entries == b.entries &&
         a.snapshot == b.snapshot;
}

TEST(Encoding, MessageRoundTrips) {
  const Message m = full_message();
  auto back = decode_message(encode_message(m));
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_TRUE(same(*back, m));
}

TEST(Encoding, EveryTruncationIsRefused) {
  const std::string bytes = encode_message(full_message());
  for (size_t n = 0; n < bytes.size(); ++n)
    ASSERT_FALSE(decode_message(bytes.substr(0, n)).ok()) << "cut at " << n;
  EXPECT_FALSE(decode_message(bytes + "x").ok()) << "trailing bytes";
}

TEST(Encoding, UnknownVersionAndTypeAreRefused) {
  std::string bytes = encode_message(full_message());
  bytes[0] = 2;
  EXPECT_EQ(decode_message(bytes).status().code(), Status::Code::kNotSupported);
  bytes[0] = 1;
  bytes[1] = 99;
  EXPECT_EQ(decode_message(bytes).status().code(), Status::Code::kCorruption);
}

// Random bytes and random damage to a valid message either decode or are refused; never a
// crash, never an unbounded allocation (run under the sanitizers in CI).
TEST(Encoding, GarbageNeverCrashes) {
  Random rng(2026);
  const std::string valid = encode_message(full_message());
  for (int round = 0; round < 20000; ++round) {
    std::string bytes = valid;
    if (round % 2) {
      bytes.resize(rng.uniform(64));
      for (char& c : bytes)
        c = static_cast<char>(rng.uniform(256));
    } else {
      for (int flips = 1 + static_cast<int>(rng.uniform(4)); flips > 0; --flips)
        bytes[rng.uniform(bytes.size())] = static_cast<char>(rng.uniform(256));
    }
    (void)decode_message(bytes);
  }
}

}  // namespace
}  // namespace raftnginx::raft
