// LogStore: the durable Raft log and hard state, a segmented write-ahead log of our own.
//
// Each save() is one record holding a Ready's entries and hard state, so that a crash keeps all
// of it or none. The format and the reasons for it are in docs/storage.md:
//
//   directory:  <dir>/<seq, 16 digits>.seg, written in order; the highest is the active one
//   record:     masked crc32 (4) | length (4) | type (1) | payload (length bytes)
//     type 1, batch:     flags (1: bit 0 hard state present) | [term, vote, commit] (8 each)
//                        | count (4) | count x [term (8) | index (8) | type (1) | data (4 + n)]
//     type 2, snapshot:  index (8) | term (8): the log restarts after this snapshot
//
// An entry whose index is at or below the last one replaces the log from there (a leader
// overwrote a conflicting suffix). A new segment starts with the current hard state, so that old
// segments can be deleted once compaction passed every entry in them.
//
// Reads are served from memory (the log since the latest snapshot, as etcd does); only writes go
// to disk. Not thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "raft/memory_storage.h"
#include "storage/env.h"

namespace raftnginx::storage {

struct LogStoreOptions {
  // A segment is closed once it grows past this many bytes.
  uint64_t segment_bytes = 64 << 20;
};

// What open() found: how much of a torn tail it cut off, for the operator's log.
struct LogRecovery {
  uint64_t records = 0;
  uint64_t truncated_bytes = 0;
  std::string truncated_segment;
};

class LogStore final : public raft::Storage {
 public:
  // Opens the log in `dir` (created if missing). `snapshot` is the latest snapshot the snapshot
  // store holds (index 0 if none): entries it covers are skipped. A torn or corrupt tail of the
  // newest segment is cut back to the last whole record; damage anywhere else is Corruption.
  static Result<std::unique_ptr<LogStore>> open(Env* env, const std::string& dir,
                                                const raft::SnapshotMeta& snapshot,
                                                const LogStoreOptions& options,
                                                LogRecovery* recovery = nullptr);

  // raft::Storage, answered from memory.
  Result<raft::InitialState> initial_state() const override { return memory_.initial_state(); }
  Result<std::vector<raft::Entry>> entries(raft::Index lo, raft::Index hi,
                                           uint64_t max_bytes) const override {
    return memory_.entries(lo, hi, max_bytes);
  }
  Result<raft::Term> term(raft::Index i) const override { return memory_.term(i); }
  raft::Index first_index() const override { return memory_.first_index(); }
  raft::Index last_index() const override { return memory_.last_index(); }
  Result<raft::SnapshotMeta> snapshot() const override { return memory_.snapshot(); }

  // True if the log holds nothing at all: a node that has never been part of a cluster.
  bool empty() const;
  // Durably appends entries (replacing any conflicting suffix) and the hard state, as one
  // record; fsyncs when `sync`. After any write or sync failure the store is failed: every later
  // call returns that error, since what reached the disk is no longer known.
  Status save(const std::vector<raft::Entry>& entries, const std::optional<raft::HardState>& hs,
              bool sync);
  // The log restarts after a snapshot received from the leader. The snapshot itself must already
  // be durable in the snapshot store.
  Status apply_snapshot(const raft::SnapshotMeta& meta);
  // A local snapshot at `meta.index` is durable: drop the entries before it except `trailing`
  // ones, and delete segments that hold nothing newer.
  Status compact(const raft::SnapshotMeta& meta, uint64_t trailing);

  size_t segment_count() const { return segments_.size(); }
  // The hard state as last saved.
  const raft::HardState& hard_state() const { return memory_.hard_state(); }

 private:
  struct Segment {
    uint64_t seq;
    raft::Index max_index;  // highest entry index written in it (0: none)
  };

  LogStore(Env* env, std::string dir, const LogStoreOptions& options,
           const raft::SnapshotMeta& snapshot);
  Status replay(LogRecovery* recovery);
  Status replay_record(uint8_t type, std::string_view payload, Segment& segment);
  Status write_record(uint8_t type, const std::string& payload, bool sync);
  Status open_segment(uint64_t seq);
  Status delete_segments_through(raft::Index index);
  std::string segment_path(uint64_t seq) const;

  Env* env_;
  const std::string dir_;
  const LogStoreOptions options_;
  raft::MemoryStorage memory_;
  std::vector<Segment> segments_;
  std::unique_ptr<WritableFile> active_;
  uint64_t active_size_ = 0;
  Status failure_;
};

}  // namespace raftnginx::storage
