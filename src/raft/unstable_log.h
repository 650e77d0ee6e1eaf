// UnstableLog: entries and a snapshot the core has accepted but the runtime has not yet made
// durable. They move to Storage when the runtime handles a Ready; advance() then drops them here.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "raft/types.h"

namespace raftnginx::raft {

class UnstableLog {
 public:
  // `offset`: the index the first unstable entry will have.
  explicit UnstableLog(Index offset) : offset_(offset) {}

  std::optional<Index> maybe_first_index() const;
  std::optional<Index> maybe_last_index() const;
  std::optional<Term> maybe_term(Index i) const;

  // Entries up to (i, t) became durable. Ignored when the entry at i changed meanwhile.
  void stable_to(Index i, Term t);
  // The pending snapshot at index i became durable.
  void stable_snapshot_to(Index i);
  // Replaces everything with a snapshot received from the leader.
  void restore(const SnapshotMeta& meta);
  // Appends entries, truncating any unstable suffix they conflict with.
  void truncate_and_append(std::vector<Entry>&& entries);
  // Entries in [lo, hi). REQUIRES: offset_ <= lo <= hi <= offset_ + entries_.size().
  std::vector<Entry> slice(Index lo, Index hi, uint64_t max_bytes) const;

  Index offset() const { return offset_; }
  const std::vector<Entry>& entries() const { return entries_; }
  const std::optional<SnapshotMeta>& snapshot() const { return snapshot_; }

 private:
  std::optional<SnapshotMeta> snapshot_;
  // entries_[i] has index offset_ + i.
  std::vector<Entry> entries_;
  Index offset_;
};

}  // namespace raftnginx::raft
