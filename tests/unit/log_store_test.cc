// The write-ahead log: what survives a reopen, a torn tail, a flipped byte, a failed fsync, a
// full disk, and a power loss.
#include "storage/log_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "fault_env.h"
#include "storage/log_format.h"
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

std::vector<std::string> segments(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string only_segment(const std::string& dir) {
  const std::vector<std::string> segs = segments(dir);
  EXPECT_EQ(segs.size(), 1u);
  return segs.front();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void overwrite(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Where each record of a segment begins, and where the last one ends, read with the format's
// own reader.
std::vector<uint64_t> record_starts(std::string_view segment) {
  std::vector<uint64_t> out;
  const uint32_t salt = decode_segment_header(segment).value().salt;
  uint64_t at = kSegmentHeaderSize;
  for (;;) {
    RecordAt r = read_record(segment.substr(at), at, segment.size(), salt);
    if (r.kind != RecordAt::Kind::kRecord)
      break;
    out.push_back(at);
    at += r.size;
  }
  out.push_back(at);
  return out;
}

// A log of `records` batches of two entries each (and, if `sealed`, closed cleanly), in one small
// segment.
struct WrittenLog {
  std::string segment;
  std::string bytes;
  std::vector<uint64_t> starts;  // of each record, and then where they end
};

LogStoreOptions small_segments() {
  LogStoreOptions o;
  o.segment_bytes = 4096;
  return o;
}

WrittenLog write_log(const std::string& dir, Index records, bool sealed) {
  {
    auto store = open_store(Env::posix(), dir, nullptr, small_segments());
    for (Index i = 1; i <= records; ++i)
      EXPECT_TRUE(store->save(batch(i * 2 - 1, i * 2, i), HardState{i, 0, i}, true).ok());
    if (sealed) {
      EXPECT_TRUE(store->close().ok());
    }
  }
  WrittenLog out;
  out.segment = only_segment(dir);
  out.bytes = read_bytes(out.segment);
  out.starts = record_starts(out.bytes);
  return out;
}

// Either the log opens with every entry written intact, or it refuses with Corruption naming the
// file: never a silent loss, never a damaged entry.
void expect_intact_or_refused(const std::string& dir, Index entries, const std::string& file,
                              const std::string& what) {
  auto store = LogStore::open(Env::posix(), dir, raft::SnapshotMeta{}, small_segments());
  if (!store.ok()) {
    EXPECT_EQ(store.status().code(), Status::Code::kCorruption) << what;
    EXPECT_NE(store.status().message().find(file), std::string::npos) << what;
    return;
  }
  ASSERT_EQ((*store)->last_index(), entries) << what;
  for (const Entry& e : all_entries(**store))
    ASSERT_EQ(e.data.view(), "value-" + std::to_string(e.index)) << what;
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

// A crash stops the last write anywhere: whatever part of the last record reached the disk (a
// prefix, or any sectors of it), the log reopens with the records before it, cuts the rest,
// says so, and reads as if the write never began.
TEST(LogStore, TornLastWriteIsCutAndReported) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  const WrittenLog log = write_log(dir, 4, false);
  const uint64_t last = log.starts[3];
  const uint64_t end = log.starts[4];
  const auto reopen_after = [&](const std::string& damaged, const std::string& what) {
    overwrite(log.segment, damaged);
    LogRecovery rec;
    auto store = open_store(Env::posix(), dir, &rec, small_segments());
    ASSERT_TRUE(store) << what;
    EXPECT_EQ(store->last_index(), 6u) << what;
    EXPECT_EQ(rec.records, 3u) << what;
    EXPECT_EQ(rec.torn_segment, log.segment) << what;
    EXPECT_EQ(rec.torn_offset, last) << what;
    store.reset();
    const std::string after = read_bytes(log.segment);
    EXPECT_EQ(after.substr(0, last), log.bytes.substr(0, last)) << what;
    EXPECT_EQ(after.substr(last, end - last), std::string(end - last, '\0')) << what;
  };
  for (uint64_t cut = last + 1; cut < end; ++cut) {
    std::string prefix = log.bytes;
    std::fill(prefix.begin() + static_cast<long>(cut), prefix.begin() + static_cast<long>(end), 0);
    reopen_after(prefix, "only a prefix of " + std::to_string(cut - last) + " bytes written");
  }
  for (uint64_t hole = last; hole < end; hole += 16) {
    std::string holed = log.bytes;
    std::fill(holed.begin() + static_cast<long>(hole),
              holed.begin() + static_cast<long>(std::min(hole + 16, end)), 0);
    reopen_after(holed, "16 bytes at " + std::to_string(hole) + " not written");
  }
}

// A segment is preallocated and its size recorded: cutting it anywhere is refused, naming it.
TEST(LogStore, SegmentCutAtAnyOffsetIsRefused) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  const WrittenLog log = write_log(dir, 3, true);
  for (uint64_t cut = 0; cut < log.bytes.size(); cut += cut < log.starts.back() + 64 ? 1 : 509) {
    overwrite(log.segment, std::string_view(log.bytes).substr(0, cut));
    auto store = LogStore::open(Env::posix(), dir, raft::SnapshotMeta{}, small_segments());
    ASSERT_EQ(store.status().code(), Status::Code::kCorruption) << "cut at " << cut;
    EXPECT_NE(store.status().message().find(log.segment), std::string::npos);
  }
}

// A flipped byte anywhere in the newest segment, after a clean stop (the seal witnesses every
// record) or a crash: every entry intact, or a refusal naming the file. Never a silent loss.
TEST(LogStore, FlippedByteIsNeverSilentlyLost) {
  for (bool sealed : {true, false}) {
    raftnginx::testing::TempDir tmp;
    const std::string dir = tmp.sub("log");
    const WrittenLog log = write_log(dir, 3, sealed);
    size_t refused = 0;
    for (size_t pos = 0; pos < log.starts.back() + 32; ++pos) {
      std::string damaged = log.bytes;
      damaged[pos] = static_cast<char>(damaged[pos] ^ 0x20);
      overwrite(log.segment, damaged);
      const std::string what = (sealed ? "sealed, byte " : "crashed, byte ") + std::to_string(pos);
      // After a crash the last record has no witness: damage to it reads as a torn write, and
      // its entries (5 and 6) may go; everything before must stay.
      const bool in_last_unwitnessed = !sealed && pos >= log.starts[2] && pos < log.starts[3];
      expect_intact_or_refused(dir, in_last_unwitnessed ? 4 : 6, log.segment, what);
      if (LogStore::open(Env::posix(), dir, raft::SnapshotMeta{}, small_segments()).ok())
        continue;
      ++refused;
    }
    EXPECT_GT(refused, log.starts.back() / 2) << "most flips must be caught as corruption";
  }
}

// Closed segments were sealed and synced before the next began: any damage there, a missing
// seal, a segment cut or missing, is corruption that names the file.
TEST(LogStore, DamageInAClosedSegmentIsRefused) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  LogStoreOptions tiny;
  tiny.segment_bytes = 256;
  {
    auto store = open_store(Env::posix(), dir, nullptr, tiny);
    for (Index i = 1; i <= 12; ++i)
      ASSERT_TRUE(store->save(batch(i, i, 1), std::nullopt, true).ok());
    ASSERT_GT(store->segment_count(), 2u);
  }
  const std::vector<std::string> segs = segments(dir);
  const std::string first = segs.front();
  const std::string bytes = read_bytes(first);
  const std::vector<uint64_t> starts = record_starts(bytes);
  const auto refused = [&](const std::string& what) {
    auto store = LogStore::open(Env::posix(), dir, raft::SnapshotMeta{}, tiny);
    EXPECT_EQ(store.status().code(), Status::Code::kCorruption) << what;
    EXPECT_NE(store.status().message().find(first), std::string::npos) << what;
  };
  for (size_t pos = 0; pos < starts.back(); ++pos) {
    std::string damaged = bytes;
    damaged[pos] = static_cast<char>(damaged[pos] ^ 0x01);
    overwrite(first, damaged);
    refused("byte " + std::to_string(pos));
  }
  std::string unsealed = bytes;
  std::fill(unsealed.begin() + static_cast<long>(starts[starts.size() - 2]), unsealed.end(), 0);
  overwrite(first, unsealed);
  refused("its seal zeroed");
  overwrite(first, std::string_view(bytes).substr(0, bytes.size() - 1));
  refused("cut by one byte");
  overwrite(first, bytes);
  std::filesystem::remove(segs[1]);
  auto store = LogStore::open(Env::posix(), dir, raft::SnapshotMeta{}, tiny);
  EXPECT_EQ(store.status().code(), Status::Code::kCorruption) << "a segment missing";
}

// Replay reads a segment in pieces of about a megabyte: records larger than a piece, and
// records that straddle two, come back whole, and a torn last record past the first piece is cut.
TEST(LogStore, RecordsLargerThanAReadPieceReplayWhole) {
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
  std::string bytes = read_bytes(segment);
  const std::vector<uint64_t> starts = record_starts(bytes);
  std::fill(bytes.begin() + static_cast<long>(starts[4] + 600'000),
            bytes.begin() + static_cast<long>(starts[5]), 0);
  overwrite(segment, bytes);
  LogRecovery rec;
  auto store = open_store(Env::posix(), dir, &rec);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->last_index(), written.size() - 1) << "only the torn last record is dropped";
  EXPECT_GT(rec.torn_bytes, 500'000u);
}

// Damage followed by a record written once the damaged bytes were durable is corruption, not a
// torn tail: here a record in the middle of the newest segment is zeroed.
TEST(LogStore, DamageBeforeAWitnessIsRefused) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  const WrittenLog log = write_log(dir, 4, false);
  std::string damaged = log.bytes;
  std::fill(damaged.begin() + static_cast<long>(log.starts[1]),
            damaged.begin() + static_cast<long>(log.starts[2]), 0);
  overwrite(log.segment, damaged);
  auto store = LogStore::open(Env::posix(), dir, raft::SnapshotMeta{}, small_segments());
  ASSERT_EQ(store.status().code(), Status::Code::kCorruption);
  EXPECT_NE(store.status().message().find("offset " + std::to_string(log.starts[1])),
            std::string::npos)
      << store.status().message();
}

// A client may PUT a value that is itself a well-formed record claiming everything durable. It
// is not one: record checksums start from the segment's random salt. So when the record holding
// it is torn, the tail is cut as any torn write, not taken for a witness of damage.
TEST(LogStore, ARecordSmuggledInAValueIsNoWitness) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  {
    auto store = open_store(Env::posix(), dir, nullptr, small_segments());
    ASSERT_TRUE(store->save(batch(1, 2, 1), HardState{1, 0, 2}, true).ok());
    std::string forged;
    for (uint32_t salt : {0u, 1u, 0xffffffffu})
      forged += encode_record(salt, kBatchRecord, UINT64_MAX, "forged");
    std::vector<Entry> smuggling{Entry{1, 3, raft::EntryType::kNormal, forged}};
    ASSERT_TRUE(store->save(smuggling, std::nullopt, false).ok());
  }
  const std::string segment = only_segment(dir);
  std::string bytes = read_bytes(segment);
  const std::vector<uint64_t> starts = record_starts(bytes);
  ASSERT_EQ(starts.size(), 3u);
  bytes[starts[1] + kRecordHeaderSize + 2] ^= 0x01;  // the smuggling record is torn
  overwrite(segment, bytes);
  LogRecovery rec;
  auto store = open_store(Env::posix(), dir, &rec, small_segments());
  ASSERT_TRUE(store);
  EXPECT_EQ(store->last_index(), 2u);
  EXPECT_EQ(rec.torn_offset, starts[1]);
}

// A segment that was the newest at a clean stop holds a seal in its middle, and records after
// it. Once closed, losing one of those records is damage, even though a seal came before it.
TEST(LogStore, RecordsLostAfterAnEarlierSealInAClosedSegmentAreRefused) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  LogStoreOptions tiny;
  tiny.segment_bytes = 512;
  {
    auto store = open_store(Env::posix(), dir, nullptr, tiny);
    ASSERT_TRUE(store->save(batch(1, 1, 1), std::nullopt, true).ok());
    ASSERT_TRUE(store->close().ok());
  }
  {
    auto store = open_store(Env::posix(), dir, nullptr, tiny);
    for (Index i = 2; i <= 12; ++i)
      ASSERT_TRUE(store->save(batch(i, i, 1), HardState{1, 0, i - 1}, true).ok());
    ASSERT_GT(store->segment_count(), 1u);
  }
  const std::string first = segments(dir).front();
  std::string bytes = read_bytes(first);
  const std::vector<uint64_t> starts = record_starts(bytes);
  ASSERT_GE(starts.size(), 5u);  // entry 1, the clean stop's seal, later records, the last seal
  std::fill(bytes.begin() + static_cast<long>(starts[2]),
            bytes.begin() + static_cast<long>(starts[2] + kRecordHeaderSize), 0);
  overwrite(first, bytes);
  auto store = LogStore::open(Env::posix(), dir, raft::SnapshotMeta{}, tiny);
  ASSERT_EQ(store.status().code(), Status::Code::kCorruption);
  EXPECT_NE(store.status().message().find(first), std::string::npos) << store.status().message();
}

// The newest segment is sealed for the next one only once that one is made: a next segment that
// is gone is refused, one whose making a crash interrupted is not.
TEST(LogStore, ALostNewestSegmentIsRefused) {
  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("log");
  LogStoreOptions tiny;
  tiny.segment_bytes = 256;
  {
    auto store = open_store(Env::posix(), dir, nullptr, tiny);
    for (Index i = 1; i <= 6; ++i)
      ASSERT_TRUE(store->save(batch(i, i, 1), HardState{1, 0, i}, true).ok());
    ASSERT_GT(store->segment_count(), 2u);
  }
  const std::vector<std::string> segs = segments(dir);
  const std::string newest = segs.back();
  std::filesystem::rename(newest, newest + ".new");  // as a crash just before the rename leaves it
  {
    auto store = open_store(Env::posix(), dir, nullptr, tiny);
    ASSERT_TRUE(store) << "a crash in the middle of starting a segment";
    EXPECT_GE(store->last_index(), 4u);
  }
  const std::vector<std::string> left = segments(dir);
  std::filesystem::remove(left.back());
  auto store = LogStore::open(Env::posix(), dir, raft::SnapshotMeta{}, tiny);
  ASSERT_EQ(store.status().code(), Status::Code::kCorruption);
  EXPECT_NE(store.status().message().find("was sealed for it"), std::string::npos)
      << store.status().message();
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

// A write that fails half-way (a short write), and a disk too full for the next segment: the
// store fails, and after a restart the records before are all there. Records written into the
// preallocated segment need no new space.
TEST(LogStore, ShortWriteAndFullDiskKeepEarlierRecords) {
  for (bool full_disk : {true, false}) {
    raftnginx::testing::TempDir tmp;
    testing::FaultEnv env;
    LogStoreOptions tiny;
    tiny.segment_bytes = 512;
    auto store = open_store(&env, tmp.path(), nullptr, tiny);
    ASSERT_TRUE(store->save(batch(1, 2, 1), std::nullopt, true).ok());
    if (full_disk) {
      env.disk_full_after(10);
    } else {
      env.short_write_next();
    }
    Status s = store->save(batch(3, 40, 1), std::nullopt, true);
    ASSERT_EQ(s.code(), Status::Code::kIOError) << s.to_string();
    EXPECT_NE(s.message().find(full_disk ? "No space left" : "short write"), std::string::npos);
    store.reset();
    env.disk_full_after(UINT32_MAX);
    auto reopened = open_store(&env, tmp.path(), nullptr, tiny);
    ASSERT_TRUE(reopened);
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
