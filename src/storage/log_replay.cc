// The log at start-up: every segment replayed in order, a torn write at the end cut, and any
// other damage refused with the file and offset named.
#include <algorithm>
#include <cstring>
#include <functional>

#include "raft/encoding.h"
#include "raftnginx/pace.h"
#include "storage/log_format.h"
#include "storage/log_store.h"

namespace raftnginx::storage {
namespace {

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

// A forward-only window over a file, read in pieces: a segment of many megabytes never sits in
// memory whole (which once made a restart spend most of its time copying), and a length read
// from the file makes the window grow only as far as the file really goes.
class Cursor {
 public:
  explicit Cursor(std::unique_ptr<SequentialFile> file, Pace* pace = nullptr)
      : file_(std::move(file)), pace_(pace) {}

  // Whether `n` bytes from the current offset are in window(), reading more as needed.
  bool have(size_t n) {
    if (window().size() >= n)
      return true;
    buffer_.erase(0, pos_);
    base_ += pos_;
    pos_ = 0;
    std::string piece;
    while (!eof_ && buffer_.size() < n && error_.ok()) {
      error_ = file_->read(1 << 20, &piece);
      eof_ = piece.empty();
      buffer_ += piece;
      if (pace_ != nullptr && !pace_->consumed(piece.size()))
        error_ = Status::unavailable("called off");
    }
    return buffer_.size() >= n;
  }
  std::string_view window() const { return std::string_view(buffer_).substr(pos_); }
  void skip(size_t n) { pos_ += n; }
  uint64_t offset() const { return base_ + pos_; }
  const Status& error() const { return error_; }

 private:
  std::unique_ptr<SequentialFile> file_;
  Pace* pace_;
  std::string buffer_;  // file bytes from offset base_ on; window() starts at pos_
  uint64_t base_ = 0;
  size_t pos_ = 0;
  bool eof_ = false;
  Status error_;
};

// The record at the cursor, reading as much of it as its header announces (within the segment).
RecordAt next_record(Cursor& cur, uint64_t segment_size, uint32_t salt) {
  const uint64_t offset = cur.offset();
  const uint64_t left = segment_size > offset ? segment_size - offset : 0;
  cur.have(std::min<uint64_t>(kRecordHeaderSize, left));
  const uint64_t announced = announced_record_size(cur.window(), salt);
  if (announced > kRecordHeaderSize && announced <= left)
    cur.have(announced);
  return read_record(cur.window().substr(0, left), offset, segment_size, salt);
}

// What follows the end of a segment's records: where the last byte ever written there ends, how
// many whole records lie beyond, and the first one that says it was written once `from` was
// durable (then what lies at `from` is damage).
struct Beyond {
  uint64_t written_end = 0;
  uint64_t records = 0;
  std::optional<uint64_t> witness;  // its offset
  uint64_t witness_synced = 0;
};

Beyond look_beyond(Cursor& cur, uint64_t from, uint64_t segment_size, uint32_t salt) {
  static constexpr std::string_view kMagic = "RNR2";
  Beyond out;
  out.written_end = from;
  // What lies at `from` is not a record (or is zeros): look for the next one past its first byte.
  if (cur.have(1)) {
    if (cur.window()[0] != 0)
      out.written_end = from + 1;
    cur.skip(1);
  }
  const auto note_written = [&](std::string_view bytes, uint64_t offset) {
    const auto last = std::find_if(bytes.rbegin(), bytes.rend(), [](char c) { return c != 0; });
    if (last != bytes.rend())
      out.written_end = std::max<uint64_t>(out.written_end, offset + (bytes.rend() - last));
  };
  while (cur.offset() < segment_size && cur.have(1)) {
    const std::string_view window = cur.window();
    const size_t at = window.find(kMagic);
    if (at == std::string_view::npos) {
      // Keep the last bytes: a magic may straddle this window and the next.
      const size_t skip = window.size() > kMagic.size() ? window.size() - kMagic.size() + 1 : 0;
      if (skip == 0 && !cur.have(window.size() + 1)) {
        note_written(window, cur.offset());
        break;
      }
      note_written(window.substr(0, skip), cur.offset());
      cur.skip(skip);
      continue;
    }
    note_written(window.substr(0, at), cur.offset());
    cur.skip(at);
    const uint64_t offset = cur.offset();
    RecordAt r = next_record(cur, segment_size, salt);
    if (r.kind != RecordAt::Kind::kRecord) {
      note_written(cur.window().substr(0, 1), offset);
      cur.skip(1);
      continue;
    }
    ++out.records;
    out.written_end = std::max(out.written_end, offset + r.size);
    if (r.synced > from && !out.witness) {
      out.witness = offset;
      out.witness_synced = r.synced;
    }
    cur.skip(r.size);
  }
  return out;
}

// One pass over a segment: its header checked against its name and its file, each record handed
// to `on_record`, and what lies after the last one.
struct Scan {
  SegmentHeader header;
  uint64_t end = 0;             // the first byte after the last whole record
  RecordAt stop;                // what lies at `end`
  std::optional<uint8_t> seal;  // the last record is a seal of this kind
  Beyond beyond;
};

Result<Scan> scan_segment(
    Env* env, const std::string& path, uint64_t seq, Pace* pace,
    const std::function<Status(uint8_t type, std::string_view payload)>& on_record) {
  const auto corrupt = [&](uint64_t offset, const std::string& what) {
    return Status::corruption(path + " at offset " + std::to_string(offset) + ": " + what);
  };
  auto size_on_disk = env->file_size(path);
  if (!size_on_disk.ok())
    return size_on_disk.status();
  auto file = env->open_for_read(path);
  if (!file.ok())
    return file.status();
  Cursor cur(std::move(file).value(), pace);
  cur.have(kSegmentHeaderSize);
  if (!cur.error().ok())
    return cur.error();
  auto header = decode_segment_header(cur.window());
  if (!header.ok())
    return corrupt(0, header.status().message());
  if (header->seq != seq)
    return corrupt(0, "the header says it is segment " + std::to_string(header->seq));
  if (header->size != *size_on_disk) {
    return corrupt(0, "the file is " + std::to_string(*size_on_disk) + " bytes, its header says " +
                          std::to_string(header->size) + ": it was cut or grown since");
  }
  cur.skip(kSegmentHeaderSize);
  Scan scan;
  scan.header = *header;
  for (;;) {
    const uint64_t offset = cur.offset();
    scan.stop = next_record(cur, header->size, header->salt);
    if (!cur.error().ok())
      return cur.error();
    if (scan.stop.kind != RecordAt::Kind::kRecord)
      break;
    scan.seal.reset();
    if (scan.stop.type == kSealRecord) {
      const std::string_view kind = scan.stop.payload;
      if (kind.size() != 1 || (kind[0] != kSealShutdown && kind[0] != kSealRotated))
        return corrupt(offset, "a seal of no known kind");
      scan.seal = static_cast<uint8_t>(kind[0]);
    } else if (Status s = on_record(scan.stop.type, scan.stop.payload); !s.ok()) {
      return corrupt(offset, s.message());
    }
    cur.skip(scan.stop.size);
  }
  scan.end = cur.offset();
  scan.beyond = look_beyond(cur, scan.end, header->size, header->salt);
  if (!cur.error().ok())
    return cur.error();
  return scan;
}

// A closed segment was sealed and synced before the next one began: all of it was durable, so
// it ends with its seal and nothing was ever written after it.
Status check_closed(const std::string& path, const Scan& scan) {
  const auto corrupt = [&](const std::string& what) {
    return Status::corruption(path + " at offset " + std::to_string(scan.end) + ": " + what +
                              " in a closed segment");
  };
  if (scan.stop.kind != RecordAt::Kind::kEnd)
    return corrupt(scan.stop.why);
  if (!scan.seal)
    return corrupt("records that end without the seal");
  if (scan.beyond.written_end > scan.end) {
    return corrupt("bytes after the seal up to offset " + std::to_string(scan.beyond.written_end) +
                   " (" + std::to_string(scan.beyond.records) + " whole records)");
  }
  return Status();
}

}  // namespace

Status LogStore::check_closed_segments(Env* env, const std::string& dir, Pace* pace) {
  auto names = env->list_dir(dir);
  if (!names.ok())
    return names.status();
  std::vector<std::pair<uint64_t, std::string>> closed;
  for (const std::string& name : *names) {
    if (auto seq = parse_segment_name(name))
      closed.emplace_back(*seq, dir + "/" + name);
  }
  std::sort(closed.begin(), closed.end());
  if (!closed.empty())
    closed.pop_back();  // the active one
  for (const auto& [seq, path] : closed) {
    auto scan =
        scan_segment(env, path, seq, pace, [](uint8_t, std::string_view) { return Status(); });
    if (scan.status().code() == Status::Code::kNotFound)
      continue;  // deleted by compaction meanwhile
    if (!scan.ok())
      return scan.status();
    if (Status s = check_closed(path, *scan); !s.ok())
      return s;
  }
  return Status();
}

Status LogStore::replay(LogRecovery* recovery, std::optional<SegmentEnd>* newest) {
  auto names = env_->list_dir(dir_);
  if (!names.ok())
    return names.status();
  std::vector<uint64_t> seqs;
  std::vector<uint64_t> unfinished;
  for (const std::string& name : *names) {
    const std::string suffix = std::string(kSegmentSuffix) + kUnfinishedSuffix;
    if (name.ends_with(suffix)) {
      // A segment whose making a crash interrupted: it never held a record.
      if (auto seq =
              parse_segment_name(name.substr(0, name.size() - std::strlen(kUnfinishedSuffix))))
        unfinished.push_back(*seq);
      if (Status s = env_->remove_file(dir_ + "/" + name); !s.ok())
        return s;
    } else if (auto seq = parse_segment_name(name)) {
      seqs.push_back(*seq);
    }
  }
  std::sort(seqs.begin(), seqs.end());
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (i > 0 && seqs[i] != seqs[i - 1] + 1) {
      return Status::corruption(segment_path(seqs[i - 1] + 1) + " is missing (segments " +
                                std::to_string(seqs[i - 1]) + " and " + std::to_string(seqs[i]) +
                                " are there)");
    }
    auto end = replay_segment(seqs[i], i + 1 == seqs.size(), recovery);
    if (!end.ok())
      return end.status();
    if (i + 1 == seqs.size())
      *newest = *end;
  }
  if (*newest && (*newest)->rotated &&
      std::find(unfinished.begin(), unfinished.end(), seqs.back() + 1) == unfinished.end()) {
    // Sealed once the next segment was made, which a crash can leave unfinished (it was just
    // removed, and the newest one is resumed), but not gone.
    return Status::corruption(segment_path(seqs.back() + 1) + " is missing (" +
                              segment_path(seqs.back()) + " was sealed for it)");
  }
  return Status();
}

Result<LogStore::SegmentEnd> LogStore::replay_segment(uint64_t seq, bool newest,
                                                      LogRecovery* recovery) {
  const std::string path = segment_path(seq);
  Segment segment{seq, 0};
  auto scan = scan_segment(env_, path, seq, nullptr, [&](uint8_t type, std::string_view payload) {
    ++recovery->records;
    return replay_record(type, payload, segment);
  });
  if (!scan.ok())
    return scan.status();
  segments_.push_back(segment);
  const SegmentEnd end{scan->end, scan->header.size, scan->header.salt, scan->seal == kSealRotated};
  if (!newest) {
    if (Status s = check_closed(path, *scan); !s.ok())
      return s;
    return end;
  }
  const auto corrupt = [&](const std::string& what) {
    return Status::corruption(path + " at offset " + std::to_string(scan->end) + ": " + what);
  };
  if (scan->stop.kind == RecordAt::Kind::kDamaged)
    return corrupt(scan->stop.why);
  // Zeros, or a write that did not finish: the end, unless something written once it was
  // durable follows (then it is damage to what was acknowledged).
  const bool torn = scan->stop.kind == RecordAt::Kind::kUnreadable;
  const Beyond& beyond = scan->beyond;
  if (beyond.witness) {
    return corrupt((torn ? scan->stop.why : "zeros") + ", but the record at offset " +
                   std::to_string(*beyond.witness) +
                   " was written once the segment was durable up to offset " +
                   std::to_string(beyond.witness_synced));
  }
  if (beyond.written_end > scan->end) {
    if (Status s = cut_torn_tail(path, scan->end, beyond.written_end); !s.ok())
      return s;
    recovery->torn_segment = path;
    recovery->torn_offset = scan->end;
    recovery->torn_bytes = beyond.written_end - scan->end;
    recovery->dropped_records = beyond.records;
    recovery->torn_reason = torn ? scan->stop.why : "bytes after the last record";
  }
  return end;
}

// Zeros [from, to) and syncs it: the segment reads as if the torn write never began.
Status LogStore::cut_torn_tail(const std::string& path, uint64_t from, uint64_t to) {
  auto file = env_->open_at(path, from);
  if (!file.ok())
    return file.status();
  Status s = (*file)->append(std::string(to - from, '\0'));
  if (s.ok())
    s = (*file)->sync();
  if (s.ok())
    s = (*file)->close();
  return s;
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
  const uint32_t count = r.count(21, UINT32_MAX);  // an entry takes at least 21 bytes
  std::vector<raft::Entry> entries;
  entries.reserve(count);
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

}  // namespace raftnginx::storage
