// Storage: the durable log as the core reads it.
//
// The core only reads through this interface; the runtime writes to the concrete storage while it
// handles a Ready (append entries, set the hard state, install a snapshot) and only then calls
// RawNode::advance(). Index ranges are half-open, [lo, hi). The log holds every entry after the
// latest snapshot, and may keep some before it (trailing entries for followers that lag a little).
#pragma once

#include <cstdint>
#include <vector>

#include "raft/types.h"
#include "raftnginx/status.h"

namespace raftnginx::raft {

struct InitialState {
  HardState hard_state;
  // The snapshot the log starts after (index 0: the bootstrap membership, no snapshot yet).
  SnapshotMeta snapshot;
};

class Storage {
 public:
  virtual ~Storage() = default;

  virtual Result<InitialState> initial_state() const = 0;
  // Entries in [lo, hi), stopping before the total passes max_bytes but always returning at least
  // one entry. Compacted if lo < first_index(); Unavailable if hi > last_index() + 1.
  virtual Result<std::vector<Entry>> entries(Index lo, Index hi, uint64_t max_bytes) const = 0;
  // Term of entry i, for i in [first_index() - 1, last_index()].
  virtual Result<Term> term(Index i) const = 0;
  // Index of the first entry still in the log; at most the snapshot index + 1.
  virtual Index first_index() const = 0;
  // Index of the last entry; first_index() - 1 when the log is empty.
  virtual Index last_index() const = 0;
  // The latest snapshot's metadata; Unavailable if none can be sent right now.
  virtual Result<SnapshotMeta> snapshot() const = 0;
};

}  // namespace raftnginx::raft
