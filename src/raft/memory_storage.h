// MemoryStorage: a Storage kept in memory, for tests and the simulator.
//
// It also plays the runtime's writing side: append(), set_hard_state(), apply_snapshot() and
// compact(). Not thread-safe: the caller serializes access.
#pragma once

#include <deque>

#include "raft/storage.h"

namespace raftnginx::raft {

class MemoryStorage final : public Storage {
 public:
  // An empty log, for a node that will join a cluster.
  MemoryStorage();
  // The bootstrap state of a new cluster whose initial members are `initial_members`.
  explicit MemoryStorage(const ConfState& initial_members);

  Result<InitialState> initial_state() const override;
  Result<std::vector<Entry>> entries(Index lo, Index hi, uint64_t max_bytes) const override;
  Result<Term> term(Index i) const override;
  Index first_index() const override;
  Index last_index() const override;
  Result<SnapshotMeta> snapshot() const override;

  void set_hard_state(const HardState& hs) { hard_state_ = hs; }
  const HardState& hard_state() const { return hard_state_; }
  // Appends entries, replacing any existing suffix they overlap (a leader overwrote it).
  // REQUIRES: entries are contiguous and entries.front().index <= last_index() + 1.
  void append(const std::vector<Entry>& entries);
  // Replaces the whole log with `meta`; ignored if older than the current snapshot.
  void apply_snapshot(const SnapshotMeta& meta);
  // Records a snapshot taken by the application at `index` (<= last_index) and discards the
  // entries it covers, keeping `trailing` entries before it for followers that lag a little.
  Status create_snapshot(Index index, const ConfState& conf, uint64_t trailing = 0);

 private:
  // Index of log_[0], the placeholder that keeps the term of the entry before first_index().
  Index offset() const { return log_.front().index; }

  HardState hard_state_;
  SnapshotMeta snapshot_;
  // log_[i] has index offset() + i; log_[0] is a placeholder holding only index and term.
  std::deque<Entry> log_;
};

}  // namespace raftnginx::raft
