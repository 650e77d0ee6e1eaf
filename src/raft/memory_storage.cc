#include "raft/memory_storage.h"

#include <algorithm>

#include "raft/raw_node.h"

namespace raftnginx::raft {

MemoryStorage::MemoryStorage() {
  log_.push_back(Entry{});
}

MemoryStorage::MemoryStorage(const ConfState& initial_members) : MemoryStorage() {
  BootstrapState boot = bootstrap_state(initial_members);
  append(boot.entries);
  hard_state_ = boot.hard_state;
}

Result<InitialState> MemoryStorage::initial_state() const {
  return InitialState{hard_state_, snapshot_};
}

Index MemoryStorage::first_index() const {
  return offset() + 1;
}

Index MemoryStorage::last_index() const {
  return offset() + log_.size() - 1;
}

Result<Term> MemoryStorage::term(Index i) const {
  if (i < offset())
    return Status::compacted("index " + std::to_string(i) + " compacted");
  if (i > last_index())
    return Status::unavailable("index " + std::to_string(i) + " not yet");
  return log_[i - offset()].term;
}

Result<std::vector<Entry>> MemoryStorage::entries(Index lo, Index hi, uint64_t max_bytes) const {
  if (lo <= offset())
    return Status::compacted("index " + std::to_string(lo) + " compacted");
  if (hi > last_index() + 1) {
    return Status::unavailable("index " + std::to_string(hi - 1) + " not yet");
  }
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = log_[i - offset()];
    bytes += entry_size(e);
    if (!out.empty() && bytes > max_bytes)
      break;
    out.push_back(e);
  }
  return out;
}

Result<SnapshotMeta> MemoryStorage::snapshot() const {
  return snapshot_;
}

void MemoryStorage::append(const std::vector<Entry>& entries) {
  if (entries.empty())
    return;
  const Index first = entries.front().index;
  RAFTNGINX_CHECK(first <= last_index() + 1, "append leaves a gap in the log");
  // Entries the snapshot already covers are dropped; the rest replace any conflicting suffix.
  auto begin = entries.begin();
  if (first <= offset()) {
    const Index skip = offset() + 1 - first;
    if (skip >= entries.size())
      return;
    begin += static_cast<std::ptrdiff_t>(skip);
  }
  const Index start = begin->index;
  log_.resize(start - offset());
  log_.insert(log_.end(), begin, entries.end());
}

void MemoryStorage::apply_snapshot(const SnapshotMeta& meta) {
  if (meta.index < snapshot_.index)
    return;
  snapshot_ = meta;
  log_.clear();
  log_.push_back(Entry{meta.term, meta.index, EntryType::kNormal, {}});
}

Status MemoryStorage::create_snapshot(Index index, const ConfState& conf, uint64_t trailing) {
  if (index <= snapshot_.index)
    return Status::invalid_argument("snapshot is not newer");
  if (index > last_index())
    return Status::invalid_argument("snapshot past the last entry");
  snapshot_ = SnapshotMeta{index, log_[index - offset()].term, conf};
  const Index keep_from = index > trailing ? index - trailing : 0;
  if (keep_from > offset()) {
    log_.erase(log_.begin(), log_.begin() + static_cast<std::ptrdiff_t>(keep_from - offset()));
    log_.front().data = {};
    log_.front().type = EntryType::kNormal;
  }
  return Status();
}

}  // namespace raftnginx::raft
