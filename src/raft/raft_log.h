// RaftLog: the log as the consensus algorithm sees it, durable entries (Storage) followed by
// unstable ones, with commitIndex and the index of the last entry handed to the application.
//
// Invariant: applied <= committed <= last_index(). Entries at or below committed never change.
#pragma once

#include <utility>
#include <vector>

#include "raft/storage.h"
#include "raft/unstable_log.h"

namespace raftnginx::raft {

class RaftLog {
 public:
  // Starts after storage's last entry, with committed and applied as given.
  RaftLog(const Storage& storage, Index committed, Index applied);

  Index first_index() const;
  Index last_index() const;
  Term last_term() const;
  // Term of entry i; Compacted below first_index() - 1, Unavailable past last_index().
  Result<Term> term(Index i) const;
  bool match_term(Index i, Term t) const;

  // AppendEntries receiver rules (paper Fig. 2, steps 2-5). If the entry at prev_index has
  // prev_term, appends `entries` (dropping those already present, truncating on conflict),
  // advances commit to min(leader_commit, last new index) and returns the last new index.
  std::optional<Index> maybe_append(Index prev_index, Term prev_term, Index leader_commit,
                                    std::vector<Entry>&& entries);
  // Appends entries after last_index() (the leader's own proposals). Returns the new last index.
  Index append(std::vector<Entry>&& entries);

  // The first index among `entries` whose term differs from ours, or 0 if all match (an index
  // past our last counts as differing).
  Index find_conflict(const std::vector<Entry>& entries) const;
  // Fast log back-off (thesis 5.3 optimization): the largest index <= `index` whose entry has a
  // term <= `term`, with that term. Used by both sides of a rejected AppendEntries.
  std::pair<Index, Term> find_conflict_by_term(Index index, Term term) const;

  // Entries in [lo, hi) capped at max_bytes (at least one entry).
  Result<std::vector<Entry>> slice(Index lo, Index hi, uint64_t max_bytes) const;

  // The election restriction (paper 5.4.1): is a log ending at (index, term) at least as
  // up-to-date as ours?
  bool is_up_to_date(Index index, Term term) const;

  Index committed() const { return committed_; }
  Index applied() const { return applied_; }
  // REQUIRES: i <= last_index(). Never moves backwards.
  void commit_to(Index i);
  // The leader's commit rule (paper 5.4.2): commit i only if its entry is from `term`.
  bool maybe_commit(Index i, Term term);
  // REQUIRES: applied() <= i <= committed().
  void applied_to(Index i);

  // Committed entries after applied(), at most max_bytes (at least one when any).
  std::vector<Entry> next_committed_entries(uint64_t max_bytes) const;
  bool has_next_committed_entries() const;

  const std::vector<Entry>& unstable_entries() const { return unstable_.entries(); }
  const std::optional<SnapshotMeta>& unstable_snapshot() const { return unstable_.snapshot(); }
  void stable_to(Index i, Term t) { unstable_.stable_to(i, t); }
  void stable_snapshot_to(Index i) { unstable_.stable_snapshot_to(i); }
  // Index of the last entry that is already durable.
  Index last_stable_index() const;

  // The latest snapshot, pending or stored.
  Result<SnapshotMeta> snapshot() const;
  // Replaces the log with a snapshot from the leader; commit jumps to its index, and applied does
  // once the runtime has installed it (applied_to).
  void restore(const SnapshotMeta& meta);

 private:
  const Storage& storage_;
  UnstableLog unstable_;
  Index committed_;
  Index applied_;
};

}  // namespace raftnginx::raft
