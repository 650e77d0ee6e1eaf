// The log's writes: records, syncs, segments created, rotated, sealed and deleted. Start-up is in
// log_replay.cc.
#include "storage/log_store.h"

#include <algorithm>
#include <cstdio>
#include <random>

#include "raft/encoding.h"
#include "storage/log_format.h"

namespace raftnginx::storage {
namespace {

std::string encode_batch(const std::vector<raft::Entry>& entries,
                         const std::optional<raft::HardState>& hs) {
  std::string out;
  uint64_t bytes = 1 + 24 + 4;
  for (const raft::Entry& e : entries)
    bytes += 21 + e.data.size();
  out.reserve(bytes);
  put_u8(&out, hs ? 1 : 0);
  if (hs) {
    put_u64(&out, hs->term);
    put_u64(&out, hs->vote);
    put_u64(&out, hs->commit);
  }
  put_u32(&out, static_cast<uint32_t>(entries.size()));
  for (const raft::Entry& e : entries)
    raft::put_entry(&out, e);
  return out;
}

}  // namespace

LogStore::LogStore(Env* env, std::string dir, const LogStoreOptions& options,
                   const raft::SnapshotMeta& snapshot)
    : env_(env), dir_(std::move(dir)), options_(options) {
  if (snapshot.index > 0)
    memory_.apply_snapshot(snapshot);
}

std::string LogStore::segment_path(uint64_t seq) const {
  char name[32];
  std::snprintf(name, sizeof name, "%016llu%s", static_cast<unsigned long long>(seq),
                kSegmentSuffix);
  return dir_ + "/" + name;
}

Result<std::unique_ptr<LogStore>> LogStore::open(Env* env, const std::string& dir,
                                                 const raft::SnapshotMeta& snapshot,
                                                 const LogStoreOptions& options,
                                                 LogRecovery* recovery) {
  if (Status s = env->create_dirs(dir); !s.ok())
    return s;
  std::unique_ptr<LogStore> store(new LogStore(env, dir, options, snapshot));
  LogRecovery ignored;
  std::optional<SegmentEnd> newest;
  if (Status s = store->replay(recovery ? recovery : &ignored, &newest); !s.ok())
    return s;
  if (newest) {
    if (Status s = store->resume_segment(store->segments_.back().seq, *newest); !s.ok())
      return s;
    return store;
  }
  auto first = store->make_segment(1, options.segment_bytes);
  if (!first.ok())
    return first.status();
  if (Status s = store->install_segment(1, *first); !s.ok())
    return s;
  return store;
}

// Size allocated, header with a fresh salt synced, under the temporary name: so a segment file
// that does not match its header was changed since.
Result<LogStore::SegmentEnd> LogStore::make_segment(uint64_t seq, uint64_t size) {
  const std::string tmp = segment_path(seq) + kUnfinishedSuffix;
  uint64_t existing = 0;
  auto created = env_->open_for_append(tmp, &existing);
  if (!created.ok())
    return created.status();
  if (Status s = (*created)->close(); !s.ok())
    return s;
  if (Status s = env_->allocate(tmp, size); !s.ok())
    return s;
  auto file = env_->open_at(tmp, 0);
  if (!file.ok())
    return file.status();
  const uint32_t salt = static_cast<uint32_t>(std::random_device()());
  Status written = (*file)->append(encode_segment_header(SegmentHeader{seq, size, salt}));
  if (written.ok())
    written = (*file)->sync();
  if (written.ok())
    written = (*file)->close();
  if (!written.ok())
    return written;
  return SegmentEnd{kSegmentHeaderSize, size, salt, false};
}

Status LogStore::install_segment(uint64_t seq, const SegmentEnd& end) {
  const std::string path = segment_path(seq);
  if (Status s = env_->rename(path + kUnfinishedSuffix, path); !s.ok())
    return s;
  if (Status s = env_->sync_dir(dir_); !s.ok())
    return s;
  segments_.push_back(Segment{seq, 0});
  return resume_segment(seq, end);
}

Status LogStore::resume_segment(uint64_t seq, const SegmentEnd& end) {
  if (active_) {
    if (Status s = active_->close(); !s.ok())
      return s;
  }
  auto file = env_->open_at(segment_path(seq), end.offset);
  if (!file.ok())
    return file.status();
  active_ = std::move(file).value();
  active_offset_ = end.offset;
  active_size_ = end.size;
  active_salt_ = end.salt;
  // What replay read may still sit only in the page cache (after a crash of the process, not of
  // the machine): sync it before any record claims it durable.
  if (Status s = active_->sync(); !s.ok())
    return s;
  active_synced_ = end.offset;
  return Status();
}

Status LogStore::write_record(uint8_t type, const std::string& payload, bool sync) {
  const std::string record = encode_record(active_salt_, type, active_synced_, payload);
  Status s = active_->append(record);
  if (s.ok()) {
    active_offset_ += record.size();
    if (sync)
      s = sync_active();
  }
  if (!s.ok())
    failure_ = s;
  return s;
}

Status LogStore::sync_active() {
  if (Status s = active_->sync(); !s.ok()) {
    failure_ = s;
    return s;
  }
  active_synced_ = active_offset_;
  return Status();
}

// A seal is written once everything before it is durable, and is synced itself: it witnesses
// that the segment's last record was acknowledged.
Status LogStore::seal_active(uint8_t kind) {
  if (active_synced_ < active_offset_) {
    if (Status s = sync_active(); !s.ok())
      return s;
  }
  return write_record(kSealRecord, std::string(1, static_cast<char>(kind)), true);
}

Status LogStore::append_record(uint8_t type, const std::string& payload, bool sync) {
  if (!failure_.ok())
    return failure_;
  if (closed_)
    return Status::unavailable("the log is closed");
  // Room for the record and, after it, the seal that closes the segment.
  const uint64_t needed = 2 * kRecordHeaderSize + 1 + payload.size();
  if (active_offset_ + needed > active_size_) {
    if (Status s = rotate(needed); !s.ok()) {
      failure_ = s;
      return s;
    }
  }
  return write_record(type, payload, sync);
}

// Starts the next segment with the current hard state, so that older segments can go once
// compaction passed their entries. The next segment is made first and the active one sealed for
// it before it is renamed into place: a newest segment sealed for a next one that is neither
// there nor being made means that one was lost.
Status LogStore::rotate(uint64_t record_bytes) {
  const std::string hard_state = encode_batch({}, memory_.hard_state());
  const uint64_t fits =
      kSegmentHeaderSize + 2 * kRecordHeaderSize + 1 + hard_state.size() + record_bytes;
  const uint64_t seq = segments_.back().seq + 1;
  auto next = make_segment(seq, std::max(options_.segment_bytes, fits));
  if (!next.ok())
    return next.status();
  if (Status s = seal_active(kSealRotated); !s.ok())
    return s;
  if (Status s = install_segment(seq, *next); !s.ok())
    return s;
  return write_record(kBatchRecord, hard_state, true);
}

bool LogStore::empty() const {
  return memory_.last_index() == 0 && memory_.hard_state() == raft::HardState{};
}

Status LogStore::save(const std::vector<raft::Entry>& entries,
                      const std::optional<raft::HardState>& hs, bool sync) {
  if (!failure_.ok())
    return failure_;
  if (entries.empty() && !hs)
    return Status();
  if (!entries.empty() && entries.front().index > memory_.last_index() + 1) {
    return Status::invalid_argument("entry " + std::to_string(entries.front().index) +
                                    " would leave a gap after " +
                                    std::to_string(memory_.last_index()));
  }
  if (Status s = append_record(kBatchRecord, encode_batch(entries, hs), sync); !s.ok())
    return s;
  if (!entries.empty()) {
    memory_.append(entries);
    Segment& active = segments_.back();
    active.max_index = std::max(active.max_index, entries.back().index);
  }
  if (hs)
    memory_.set_hard_state(*hs);
  return Status();
}

Status LogStore::apply_snapshot(const raft::SnapshotMeta& meta) {
  std::string payload;
  put_u64(&payload, meta.index);
  put_u64(&payload, meta.term);
  if (Status s = append_record(kSnapshotRecord, payload, true); !s.ok())
    return s;
  memory_.apply_snapshot(meta);
  return Status();
}

Status LogStore::compact(const raft::SnapshotMeta& meta, uint64_t trailing) {
  if (!failure_.ok())
    return failure_;
  if (meta.index <= memory_.snapshot()->index)
    return Status();
  if (Status s = memory_.create_snapshot(meta.index, meta.conf, trailing); !s.ok())
    return s;
  return delete_segments_through(memory_.first_index() - 1);
}

Status LogStore::close() {
  if (!failure_.ok() || closed_)
    return failure_;
  Status s = seal_active(kSealShutdown);
  if (s.ok())
    s = active_->close();
  closed_ = true;
  return s;
}

Status LogStore::delete_segments_through(raft::Index index) {
  bool deleted = false;
  // Oldest first, never the active segment, and stop at the first one still needed: a later
  // segment may overwrite entries of an earlier one, never the reverse.
  while (segments_.size() > 1 && segments_.front().max_index <= index) {
    if (Status s = env_->remove_file(segment_path(segments_.front().seq)); !s.ok())
      return s;
    segments_.erase(segments_.begin());
    deleted = true;
  }
  return deleted ? env_->sync_dir(dir_) : Status();
}

}  // namespace raftnginx::storage
