#include "raft/unstable_log.h"

namespace raftnginx::raft {

std::optional<Index> UnstableLog::maybe_first_index() const {
  if (snapshot_)
    return snapshot_->index + 1;
  return std::nullopt;
}

std::optional<Index> UnstableLog::maybe_last_index() const {
  if (!entries_.empty())
    return offset_ + entries_.size() - 1;
  if (snapshot_)
    return snapshot_->index;
  return std::nullopt;
}

std::optional<Term> UnstableLog::maybe_term(Index i) const {
  if (i < offset_) {
    if (snapshot_ && snapshot_->index == i)
      return snapshot_->term;
    return std::nullopt;
  }
  const auto last = maybe_last_index();
  if (!last || i > *last)
    return std::nullopt;
  return entries_[i - offset_].term;
}

void UnstableLog::stable_to(Index i, Term t) {
  if (i < offset_)
    return;
  const auto term = maybe_term(i);
  // An entry that was replaced since the Ready was produced is still unstable.
  if (!term || *term != t)
    return;
  const size_t count = i - offset_ + 1;
  if (count >= entries_.size()) {
    entries_.clear();
  } else {
    entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(count));
  }
  offset_ = i + 1;
}

void UnstableLog::stable_snapshot_to(Index i) {
  if (snapshot_ && snapshot_->index == i)
    snapshot_.reset();
}

void UnstableLog::restore(const SnapshotMeta& meta) {
  offset_ = meta.index + 1;
  entries_.clear();
  snapshot_ = meta;
}

void UnstableLog::truncate_and_append(std::vector<Entry>&& entries) {
  if (entries.empty())
    return;
  const Index after = entries.front().index;
  if (after == offset_ + entries_.size()) {
    // The common case: the new entries directly follow.
    entries_.insert(entries_.end(), std::make_move_iterator(entries.begin()),
                    std::make_move_iterator(entries.end()));
  } else if (after <= offset_) {
    // Replaces all unstable entries (and some stable ones, which Storage will overwrite).
    offset_ = after;
    entries_ = std::move(entries);
  } else {
    entries_.resize(after - offset_);
    entries_.insert(entries_.end(), std::make_move_iterator(entries.begin()),
                    std::make_move_iterator(entries.end()));
  }
}

std::vector<Entry> UnstableLog::slice(Index lo, Index hi, uint64_t max_bytes) const {
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - offset_];
    bytes += entry_size(e);
    if (!out.empty() && bytes > max_bytes)
      break;
    out.push_back(e);
  }
  return out;
}

}  // namespace raftnginx::raft
