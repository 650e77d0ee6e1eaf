// The write-ahead log: what survives a reopen, a torn tail, a flipped byte, a failed fsync, a
// full disk, and a power loss.
#include "storage/log_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fault_env.h"
#include "temp_dir.h"

namespace raftnginx::storage {
namespace {

using raft::Entry;
using raft::HardState;
using raft::Index;
using raft::Term;

std::vector<Entry> batch(Index first, Index last, Term term) {
  std::vector<Entry> out;
  for (Index i = first; i <= last; ++i)
    out.push_back(Entry{term, i, raft::EntryType::kNormal, "value-" + std::to_string(i)});
  return out;
}

std::unique_ptr<LogStore> open_store(Env* env, const std::string& dir, LogRecovery* rec = nullptr,
                                     LogStoreOptions options = {}) {
  auto store = LogStore::open(env, dir, raft::SnapshotMeta{}, options, rec);
  EXPECT_TRUE(store.ok()) << store.status().to_string();
  return store.ok() ? std::move(store).value() : nullptr;
}

std::vector<Entry> all_entries(const LogStore& store) {
  if (store.last_index() < store.first_index())
    return {};
  return *store.entries(store.first_index(), store.last_index() + 1, UINT64_MAX);
}

std::string only_segment(const std::string& dir) {
  std::vector<std::string> segs;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    segs.push_back(e.path().string());
  EXPECT_EQ(segs.size(), 1u);
  return segs.front();
}

// Writes `records` batches of two entries each; returns the segment's bytes and where each
// record ends in it.
struct WrittenLog {
  std::string segment;
  std::string bytes;
  std::vector<uint64_t> record_ends;
};

WrittenLog write_log(const std::string& dir, Index records, bool new_term_each_record) {
  WrittenLog out;
  {
    auto store = open_store(Env::posix(), dir);
    for (Index i = 1; i <= records; ++i) {
      const Term term = new_term_each_record ? i : 1;
      EXPECT_TRUE(store->save(batch(i * 2 - 1, i * 2, term), HardState{term, 0, i}, true).ok());
      out.record_ends.push_back(std::filesystem::file_size(only_segment(dir)));
    }
  }
  out.segment = only_segment(dir);
  std::ifstream in(out.segment, std::ios::binary);
  out.bytes.assign(std::istreambuf_iterator<char>(in), {});
  return out;
}

void overwrite(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(LogStore, EntriesAndHardStateSurviveReopen) {
  raftnginx::testing::TempDir tmp;
  {
    auto store = open_store(Env::posix(), tmp.path());
    EXPECT_TRUE(store->empty());
    ASSERT_TRUE(store->save(batch(1, 3, 1), HardState{1, 2, 3}, true).ok());
    ASSERT_TRUE(store->save(batch(4, 5, 2), HardState{2, 0, 4}, true).ok());
  }
  auto store = open_store(Env::posix(), tmp.path());
  EXPECT_FALSE(store->empty());
  EXPECT_EQ(store->last_index(), 5u);
  EXPECT_EQ(*store->term(5), 2u);
  EXPECT_EQ(store->initial_state()->hard_state, (HardState{2, 0, 4}));
  EXPECT_EQ(all_entries(*store)[2].data.view(), "value-3");
}

TEST(LogStore, ConflictingSuffixIsReplacedAfterReopen) {
  raftnginx::testing::TempDir tmp;
  {
    auto store = open_store(Env::posix(), tmp.path());
    ASSERT_TRUE(store->save(batch(1, 5, 1), std::nullopt, true).ok());
    ASSERT_TRUE(store->save(batch(3, 4, 2), std::nullopt, true).ok());
  }
  auto store = open_store(Env::posix(), tmp.path());
  EXPECT_EQ(store->last_index(), 4u);
  EXPECT_EQ(*store->term(2), 1u);
  EXPECT_EQ(*store->term(3), 2u);
}

TEST(LogStore, GapIsRefused) {
  raftnginx::testing::TempDir tmp;
  auto store = open_store(Env::posix(), tmp.path());
  ASSERT_TRUE(store->save(batch(1, 2, 1), std::nullopt, true).ok());
  EXPECT_EQ(store->save(batch(5, 6, 1), std::nullopt, true).code(), Status::Code::kInvalidArgument);
}

// A crash can stop a write anywhere. Whatever the cut, the log reopens holding exactly the
// records that were written whole, and cuts the rest off.
TEST(LogStore, TornTailAtEveryOffsetRecoversWholeRecords) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  const WrittenLog log = write_log(dir, 4, true);
  const std::string& segment = log.segment;
  const std::vector<uint64_t>& record_ends = log.record_ends;
  for (size_t cut = 0; cut < log.bytes.size(); ++cut) {
    overwrite(segment, std::string_view(log.bytes).substr(0, cut));
    size_t whole = 0;
    while (whole < record_ends.size() && record_ends[whole] <= cut)
      ++whole;
    LogRecovery rec;
    auto store = open_store(Env::posix(), dir, &rec);
    ASSERT_TRUE(store) << "cut at " << cut;
    ASSERT_EQ(store->last_index(), whole * 2) << "cut at " << cut;
    ASSERT_EQ(rec.records, whole);
    const uint64_t kept = whole ? record_ends[whole - 1] : 0;
    ASSERT_EQ(rec.truncated_bytes, cut - kept);
    ASSERT_EQ(std::filesystem::file_size(segment), kept) << "the torn tail was cut off";
  }
}

// Replay reads a segment in chunks of about a megabyte: records larger than a chunk, and
// records that straddle two, come back whole, and a torn tail past the first chunk is cut.
TEST(LogStore, RecordsLargerThanAReadChunkReplayWhole) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  std::vector<Entry> written;
  {
    auto store = open_store(Env::posix(), dir);
    Index next = 1;
    for (size_t size : {300'000, 700'000, 2'500'000, 90'000, 1'100'000}) {
      std::vector<Entry> one{Entry{1, next, raft::EntryType::kNormal,
                                   std::string(size, static_cast<char>('a' + next))}};
      ASSERT_TRUE(store->save(one, HardState{1, 0, 0}, true).ok());
      written.push_back(one.front());
      ++next;
    }
  }
  const std::string segment = only_segment(dir);
  {
    auto store = open_store(Env::posix(), dir);
    ASSERT_TRUE(store);
    const std::vector<Entry> replayed = all_entries(*store);
    ASSERT_EQ(replayed.size(), written.size());
    for (size_t i = 0; i < written.size(); ++i)
      EXPECT_EQ(replayed[i].data.view(), written[i].data.view()) << "entry " << i + 1;
  }
  const uint64_t size = std::filesystem::file_size(segment);
  std::filesystem::resize_file(segment, size - 1);
  LogRecovery rec;
  auto store = open_store(Env::posix(), dir, &rec);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->last_index(), written.size() - 1) << "only the torn last record is dropped";
  EXPECT_GT(rec.truncated_bytes, 1'000'000u);
}

// A flipped bit anywhere in the newest segment is caught by the checksum: the damaged record
// and everything after it are dropped, nothing damaged is ever returned.
TEST(LogStore, FlippedByteIsNeverReturned) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  const WrittenLog log = write_log(dir, 3, false);
  const std::vector<uint64_t>& record_ends = log.record_ends;
  for (size_t pos = 0; pos < log.bytes.size(); ++pos) {
    std::string damaged = log.bytes;
    damaged[pos] = static_cast<char>(damaged[pos] ^ 0x20);
    overwrite(log.segment, damaged);
    size_t intact = 0;
    while (intact < record_ends.size() && record_ends[intact] <= pos)
      ++intact;
    auto store = LogStore::open(Env::posix(), dir, raft::SnapshotMeta{}, {});
    if (!store.ok()) {
      // A length field can be damaged into a valid-looking but wrong record boundary; that too
      // must be reported, never silently accepted.
      EXPECT_EQ(store.status().code(), Status::Code::kCorruption) << "byte " << pos;
      continue;
    }
    ASSERT_EQ((*store)->last_index(), intact * 2) << "byte " << pos;
    for (const Entry& e : all_entries(**store))
      ASSERT_EQ(e.data.view(), "value-" + std::to_string(e.index)) << "byte " << pos;
  }
}

TEST(LogStore, DamageInAClosedSegmentIsCorruption) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  {
    LogStoreOptions small;
    small.segment_bytes = 100;
    auto store = open_store(Env::posix(), dir, nullptr, small);
    for (Index i = 1; i <= 6; ++i)
      ASSERT_TRUE(store->save(batch(i, i, 1), std::nullopt, true).ok());
    ASSERT_GT(store->segment_count(), 2u);
  }
  std::vector<std::string> segs;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    segs.push_back(e.path().string());
  std::sort(segs.begin(), segs.end());
  std::filesystem::resize_file(segs.front(), std::filesystem::file_size(segs.front()) - 3);
  auto store = LogStore::open(Env::posix(), dir, raft::SnapshotMeta{}, {});
  EXPECT_EQ(store.status().code(), Status::Code::kCorruption);
}

// A failed fsync leaves the store failed: nothing more is accepted, and after a power loss only
// what was acknowledged is there.
TEST(LogStore, FailedSyncStopsWritesAndLosesNothingAcknowledged) {
  raftnginx::testing::TempDir tmp;
  testing::FaultEnv env;
  auto store = open_store(&env, tmp.path());
  ASSERT_TRUE(store->save(batch(1, 3, 1), HardState{1, 1, 3}, true).ok());
  env.fail_syncs(1);
  Status failed = store->save(batch(4, 5, 1), HardState{1, 1, 5}, true);
  ASSERT_EQ(failed.code(), Status::Code::kIOError);
  EXPECT_NE(failed.message().find("fdatasync"), std::string::npos);
  EXPECT_EQ(store->save(batch(4, 5, 1), std::nullopt, true).code(), Status::Code::kIOError)
      << "a failed store must not accept writes";
  store.reset();
  env.lose_unsynced();
  auto reopened = open_store(&env, tmp.path());
  EXPECT_EQ(reopened->last_index(), 3u);
  EXPECT_EQ(reopened->initial_state()->hard_state.commit, 3u);
}

TEST(LogStore, FullDiskAndShortWriteKeepEarlierRecords) {
  for (bool full_disk : {true, false}) {
    raftnginx::testing::TempDir tmp;
    testing::FaultEnv env;
    auto store = open_store(&env, tmp.path());
    ASSERT_TRUE(store->save(batch(1, 2, 1), std::nullopt, true).ok());
    if (full_disk) {
      env.disk_full_after(10);
    } else {
      env.short_write_next();
    }
    Status s = store->save(batch(3, 9, 1), std::nullopt, true);
    ASSERT_EQ(s.code(), Status::Code::kIOError);
    store.reset();
    auto reopened = open_store(&env, tmp.path());
    EXPECT_EQ(reopened->last_index(), 2u) << (full_disk ? "full disk" : "short write");
  }
}

TEST(LogStore, CompactionDeletesOldSegmentsAndReopensAfterSnapshot) {
  raftnginx::testing::TempDir tmp;
  LogStoreOptions small;
  small.segment_bytes = 200;
  const raft::ConfState conf{{1}, {}};
  {
    auto store = open_store(Env::posix(), tmp.path(), nullptr, small);
    for (Index i = 1; i <= 40; ++i)
      ASSERT_TRUE(store->save(batch(i, i, 1), HardState{1, 1, i}, true).ok());
    const size_t before = store->segment_count();
    ASSERT_TRUE(store->compact(raft::SnapshotMeta{30, 1, conf}, 5).ok());
    EXPECT_LT(store->segment_count(), before);
    EXPECT_EQ(store->first_index(), 26u);
  }
  auto store = LogStore::open(Env::posix(), tmp.path(), raft::SnapshotMeta{30, 1, conf}, small);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  EXPECT_EQ((*store)->first_index(), 31u);
  EXPECT_EQ((*store)->last_index(), 40u);
  EXPECT_EQ((*store)->initial_state()->hard_state.commit, 40u);
}

// After a snapshot from the leader, conflicting entries the node had after that index are gone,
// also after a restart.
TEST(LogStore, SnapshotFromLeaderReplacesTheLog) {
  raftnginx::testing::TempDir tmp;
  const raft::SnapshotMeta snap{10, 3, raft::ConfState{{1, 2, 3}, {}}};
  {
    auto store = open_store(Env::posix(), tmp.path());
    ASSERT_TRUE(store->save(batch(1, 15, 1), std::nullopt, true).ok());
    ASSERT_TRUE(store->apply_snapshot(snap).ok());
    EXPECT_EQ(store->last_index(), 10u);
    ASSERT_TRUE(store->save(batch(11, 12, 3), std::nullopt, true).ok());
  }
  auto store = LogStore::open(Env::posix(), tmp.path(), snap, {});
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  EXPECT_EQ((*store)->last_index(), 12u);
  EXPECT_EQ(*(*store)->term(11), 3u);
  // A log that claims a snapshot the snapshot store does not have is corrupt.
  auto behind = LogStore::open(Env::posix(), tmp.path(), raft::SnapshotMeta{}, {});
  EXPECT_EQ(behind.status().code(), Status::Code::kCorruption);
}

}  // namespace
}  // namespace raftnginx::storage
