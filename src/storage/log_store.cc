#include "storage/log_store.h"

#include <algorithm>
#include <cstdio>

#include "raft/encoding.h"
#include "util/checksum.h"

namespace raftnginx::storage {
namespace {

constexpr uint8_t kBatchRecord = 1;
constexpr uint8_t kSnapshotRecord = 2;
constexpr size_t kHeaderSize = 9;
constexpr const char* kSegmentSuffix = ".seg";

uint32_t masked_crc(uint8_t type, std::string_view payload) {
  const char type_byte = static_cast<char>(type);
  return mask_crc(crc32(payload, crc32(std::string_view(&type_byte, 1))));
}

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

std::optional<uint64_t> parse_segment_name(const std::string& name) {
  const std::string suffix = kSegmentSuffix;
  if (name.size() != 16 + suffix.size() || name.substr(16) != suffix)
    return std::nullopt;
  uint64_t seq = 0;
  for (char c : name.substr(0, 16)) {
    if (c < '0' || c > '9')
      return std::nullopt;
    seq = seq * 10 + static_cast<uint64_t>(c - '0');
  }
  return seq;
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
  if (Status s = store->replay(recovery ? recovery : &ignored); !s.ok())
    return s;
  const uint64_t seq = store->segments_.empty() ? 1 : store->segments_.back().seq;
  if (Status s = store->open_segment(seq); !s.ok())
    return s;
  return store;
}

Status LogStore::replay(LogRecovery* recovery) {
  auto names = env_->list_dir(dir_);
  if (!names.ok())
    return names.status();
  std::vector<uint64_t> seqs;
  for (const std::string& name : *names) {
    if (auto seq = parse_segment_name(name))
      seqs.push_back(*seq);
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    const bool newest = i + 1 == seqs.size();
    const std::string path = segment_path(seqs[i]);
    auto file = env_->open_for_read(path);
    if (!file.ok())
      return file.status();
    // Read in chunks: a segment of many megabytes never sits in memory whole, which made a
    // restart spend most of its time copying and faulting pages in.
    std::string buffer;  // bytes from file offset `base` on; parsed up to `pos`
    uint64_t base = 0;
    size_t pos = 0;
    bool eof = false;
    std::string chunk;
    Status read_error;
    // Whether `need` bytes from `pos` on are in the buffer, reading more as needed.
    const auto have = [&](size_t need) {
      if (buffer.size() - pos >= need)
        return true;
      buffer.erase(0, pos);
      base += pos;
      pos = 0;
      while (!eof && buffer.size() < need) {
        if (read_error = (*file)->read(std::max<size_t>(need - buffer.size(), 1 << 20), &chunk);
            !read_error.ok())
          return false;
        eof = chunk.empty();
        buffer += chunk;
      }
      return buffer.size() >= need;
    };
    Segment segment{seqs[i], 0};
    std::string damage;
    while (have(1)) {
      if (!have(kHeaderSize)) {
        damage = "a partial record header";
        break;
      }
      const uint32_t crc = decode_u32(buffer.data() + pos);
      const uint32_t length = decode_u32(buffer.data() + pos + 4);
      const auto type = static_cast<uint8_t>(buffer[pos + 8]);
      if (!have(kHeaderSize + size_t{length})) {
        damage = "a partial record";
        break;
      }
      const std::string_view payload = std::string_view(buffer).substr(pos + kHeaderSize, length);
      if (masked_crc(type, payload) != crc) {
        damage = "a checksum mismatch";
        break;
      }
      if (Status s = replay_record(type, payload, segment); !s.ok()) {
        return Status::corruption(path + " at offset " + std::to_string(base + pos) + ": " +
                                  s.message());
      }
      pos += kHeaderSize + length;
      ++recovery->records;
    }
    if (!read_error.ok())
      return read_error;
    if (!damage.empty()) {
      const uint64_t good = base + pos;
      // A crash in the middle of a write leaves a torn tail in the newest segment only; any
      // other damage means data that was acknowledged as durable is gone.
      if (!newest) {
        return Status::corruption(path + ": " + damage + " at offset " + std::to_string(good) +
                                  " in a closed segment");
      }
      // Read the rest of the segment, to report how much the truncation drops.
      while (!eof && read_error.ok())
        have(buffer.size() - pos + 1);
      if (!read_error.ok())
        return read_error;
      if (Status s = env_->truncate(path, good); !s.ok())
        return s;
      recovery->truncated_bytes = base + buffer.size() - good;
      recovery->truncated_segment = path;
    }
    segments_.push_back(segment);
  }
  return Status();
}

Status LogStore::replay_record(uint8_t type, std::string_view payload, Segment& segment) {
  Reader r(payload);
  if (type == kSnapshotRecord) {
    const raft::Index index = r.u64();
    const raft::Term term = r.u64();
    if (!r.done())
      return Status::corruption("malformed snapshot record");
    const raft::SnapshotMeta current = *memory_.snapshot();
    if (index > current.index) {
      return Status::corruption("the log restarts after snapshot " + std::to_string(index) +
                                ", newer than the snapshot store's " +
                                std::to_string(current.index));
    }
    // The entries replayed so far after this snapshot were replaced by it.
    if (index == current.index && term == current.term)
      memory_.apply_snapshot(current);
    return Status();
  }
  if (type != kBatchRecord)
    return Status::corruption("unknown record type " + std::to_string(type));
  std::optional<raft::HardState> hs;
  if (r.u8() & 1)
    hs = raft::HardState{r.u64(), r.u64(), r.u64()};
  const uint32_t count = r.u32();
  std::vector<raft::Entry> entries;
  entries.reserve(std::min<uint32_t>(count, 1 << 16));
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    raft::Entry e = raft::read_entry(r);
    if (!r.ok())
      break;
    if (!entries.empty() && e.index != entries.back().index + 1)
      return Status::corruption("entries out of order");
    entries.push_back(std::move(e));
  }
  if (!r.done())
    return Status::corruption("malformed batch record");
  if (!entries.empty()) {
    if (entries.front().index > memory_.last_index() + 1) {
      return Status::corruption("entry " + std::to_string(entries.front().index) +
                                " follows a gap after " + std::to_string(memory_.last_index()));
    }
    segment.max_index = std::max(segment.max_index, entries.back().index);
    memory_.append(entries);
  }
  if (hs)
    memory_.set_hard_state(*hs);
  return Status();
}

Status LogStore::open_segment(uint64_t seq) {
  if (active_) {
    if (Status s = active_->close(); !s.ok())
      return s;
  }
  auto file = env_->open_for_append(segment_path(seq), &active_size_);
  if (!file.ok())
    return file.status();
  active_ = std::move(file).value();
  if (segments_.empty() || segments_.back().seq != seq) {
    segments_.push_back(Segment{seq, 0});
    if (Status s = env_->sync_dir(dir_); !s.ok())
      return s;
  }
  return Status();
}

Status LogStore::write_record(uint8_t type, const std::string& payload, bool sync) {
  if (!failure_.ok())
    return failure_;
  std::string record;
  record.reserve(kHeaderSize + payload.size());
  put_u32(&record, masked_crc(type, payload));
  put_u32(&record, static_cast<uint32_t>(payload.size()));
  put_u8(&record, type);
  record += payload;
  Status s = active_->append(record);
  if (s.ok() && sync)
    s = active_->sync();
  if (!s.ok()) {
    failure_ = s;
    return s;
  }
  active_size_ += record.size();
  return Status();
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
  if (Status s = write_record(kBatchRecord, encode_batch(entries, hs), sync); !s.ok())
    return s;
  if (!entries.empty()) {
    memory_.append(entries);
    Segment& active = segments_.back();
    active.max_index = std::max(active.max_index, entries.back().index);
  }
  if (hs)
    memory_.set_hard_state(*hs);
  if (active_size_ < options_.segment_bytes)
    return Status();
  // Rotate; the new segment starts with the hard state so that older ones can go.
  if (Status s = open_segment(segments_.back().seq + 1); !s.ok()) {
    failure_ = s;
    return s;
  }
  return write_record(kBatchRecord, encode_batch({}, memory_.hard_state()), true);
}

Status LogStore::apply_snapshot(const raft::SnapshotMeta& meta) {
  std::string payload;
  put_u64(&payload, meta.index);
  put_u64(&payload, meta.term);
  if (Status s = write_record(kSnapshotRecord, payload, true); !s.ok())
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
