// LogStore: the durable Raft log and hard state, a segmented write-ahead log of our own.
//
// Each save() is one record holding a Ready's entries and hard state, so that a crash keeps all
// of it or none. Segments are preallocated and carry, in every record, how far they were durable
// when it was written (log_format.h), so that start-up tells a torn write from damage. The
// format and the reasons for it are in docs/storage.md:
//
//   directory:  <dir>/<seq, 16 digits>.seg, written in order; the highest is the active one
//   payloads:   type 1, batch:     flags (1: bit 0 hard state present) | [term, vote, commit]
//                                  (8 each) | count (4) | count x [term (8) | index (8) |
//                                  type (1) | data (4 + n)]
//               type 2, snapshot:  index (8) | term (8): the log restarts after this snapshot
//
// An entry whose index is at or below the last one replaces the log from there (a leader
// overwrote a conflicting suffix). A new segment starts with the current hard state, so that old
// segments can be deleted once compaction passed every entry in them.
//
// Start-up (open): a record whose write did not finish, at the end of the newest segment, with
// nothing after it that was written once it was durable, is a torn write: it is cut (zeroed and
// synced) and reported in LogRecovery. Anything else that does not check out (damage, a segment
// cut short or grown, a closed segment without its seal or with anything after it, a newest
// segment sealed for a next one that is not there) is Corruption naming the file and the
// offset: the node does not start, and `raft-nginx repair` rebuilds it from its peers.
//
// Reads are served from memory (the log since the latest snapshot, as etcd does); only writes go
// to disk. Not thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "raft/memory_storage.h"
#include "raftnginx/env.h"

namespace raftnginx {
class Pace;
}

namespace raftnginx::storage {

struct LogStoreOptions {
  // Each segment's preallocated size; a record that does not fit starts the next segment (one
  // larger than this holds a record larger than this).
  uint64_t segment_bytes = 64 << 20;
};

// What open() found, for the operator: the records replayed, and the torn write it cut, if any.
struct LogRecovery {
  uint64_t records = 0;
  std::string torn_segment;  // empty: nothing was cut
  uint64_t torn_offset = 0;
  uint64_t torn_bytes = 0;       // from torn_offset to the last byte that was not zero
  uint64_t dropped_records = 0;  // whole records after the torn one, never acknowledged
  std::string torn_reason;
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
  // A clean shutdown: syncs, then seals the active segment, so that the next start finds a
  // witness for its last record. Nothing may be saved after it.
  Status close();

  size_t segment_count() const { return segments_.size(); }

  // Re-reads the closed segments in `dir` (every one but the newest), as a scrub does while the
  // log is in use: each must hold whole records up to its seal. Corruption names the file and
  // offset; a segment deleted meanwhile (compaction) is passed over. `pace` slows the reads.
  static Status check_closed_segments(Env* env, const std::string& dir, Pace* pace);
  // The hard state as last saved.
  const raft::HardState& hard_state() const { return memory_.hard_state(); }

 private:
  struct Segment {
    uint64_t seq;
    raft::Index max_index;  // highest entry index written in it (0: none)
  };
  // Where replay of one segment stopped.
  struct SegmentEnd {
    uint64_t offset = 0;   // the first byte after the last good record
    uint64_t size = 0;     // the segment's preallocated size
    uint32_t salt = 0;     // its records' checksum salt
    bool rotated = false;  // its last record is a seal for the next segment
  };

  LogStore(Env* env, std::string dir, const LogStoreOptions& options,
           const raft::SnapshotMeta& snapshot);
  // log_replay.cc: start-up. `newest` is where the newest segment's records end, if any.
  Status replay(LogRecovery* recovery, std::optional<SegmentEnd>* newest);
  Result<SegmentEnd> replay_segment(uint64_t seq, bool newest, LogRecovery* recovery);
  Status replay_record(uint8_t type, std::string_view payload, Segment& segment);
  Status cut_torn_tail(const std::string& path, uint64_t from, uint64_t to);
  // Writes.
  // Appends a record to the active segment, first moving to a new one if it does not fit.
  Status append_record(uint8_t type, const std::string& payload, bool sync);
  Status write_record(uint8_t type, const std::string& payload, bool sync);
  Status rotate(uint64_t record_bytes);
  Status sync_active();
  Status seal_active(uint8_t kind);
  // A new segment is made whole under a temporary name (make), then renamed into place
  // (install): a segment file is never seen half-made.
  Result<SegmentEnd> make_segment(uint64_t seq, uint64_t size);
  Status install_segment(uint64_t seq, const SegmentEnd& end);
  Status resume_segment(uint64_t seq, const SegmentEnd& end);
  Status delete_segments_through(raft::Index index);
  std::string segment_path(uint64_t seq) const;

  Env* env_;
  const std::string dir_;
  const LogStoreOptions options_;
  raft::MemoryStorage memory_;
  std::vector<Segment> segments_;
  std::unique_ptr<WritableFile> active_;
  uint64_t active_offset_ = 0;  // where the next record goes
  uint64_t active_size_ = 0;    // the active segment's preallocated size
  uint64_t active_synced_ = 0;  // the offset up to which it is durable
  uint32_t active_salt_ = 0;
  bool closed_ = false;
  Status failure_;
};

}  // namespace raftnginx::storage
