// Progress: what the leader knows of one follower's log (matchIndex, nextIndex) and how it
// replicates to it.
//
// A follower is in one of three states:
//   probe:     the leader does not know where the logs diverge; one AppendEntries at a time.
//   replicate: the logs match up to matchIndex; entries are pipelined, bounded by Inflights.
//   snapshot:  the entries the follower needs are compacted; a snapshot is on its way.
#pragma once

#include <cstdint>
#include <deque>

#include "raft/types.h"

namespace raftnginx::raft {

// The window of AppendEntries messages sent but not yet acknowledged, bounded in count and bytes
// so that a slow follower cannot make the leader buffer without limit.
class Inflights {
 public:
  Inflights(size_t max_count, uint64_t max_bytes) : max_count_(max_count), max_bytes_(max_bytes) {}

  // Records a message whose last entry is `last` and that carries `bytes` bytes of entries.
  void add(Index last, uint64_t bytes);
  // Frees every message whose last entry is <= `index` (acknowledged).
  void free_up_to(Index index);
  // Frees the oldest message, whose acknowledgement was likely lost.
  void free_first();
  void reset();
  bool full() const { return items_.size() >= max_count_ || (max_bytes_ && bytes_ >= max_bytes_); }
  size_t count() const { return items_.size(); }

 private:
  struct Item {
    Index last;
    uint64_t bytes;
  };
  size_t max_count_;
  uint64_t max_bytes_;
  uint64_t bytes_ = 0;
  std::deque<Item> items_;
};

class Progress {
 public:
  enum class State : uint8_t { kProbe, kReplicate, kSnapshot };

  Progress(Index next, size_t max_inflight, uint64_t max_inflight_bytes)
      : next_index(next), inflights(max_inflight, max_inflight_bytes) {}

  void become_probe();
  void become_replicate();
  void become_snapshot(Index snapshot_index);

  // An AppendEntries response acknowledged entries up to `index`. Returns whether matchIndex
  // moved forward. Resumes a probe that was waiting.
  bool maybe_update(Index index);
  // In replicate state, entries up to `last` were just sent: nextIndex moves past them.
  void optimistic_update(Index last) { next_index = last + 1; }
  // A rejection of prevLogIndex `rejected`; `hint` is where the follower suggests retrying.
  // Returns false if the rejection is stale (answers an earlier message).
  bool maybe_decrease_to(Index rejected, Index hint);
  // Whether the leader should hold back AppendEntries to this follower for now.
  bool is_paused() const;

  State state = State::kProbe;
  Index match_index = 0;
  Index next_index;
  // In probe state: an AppendEntries is out and unanswered.
  bool probe_sent = false;
  // In snapshot state: the index of the snapshot being sent.
  Index pending_snapshot = 0;
  // Heard from since the last check-quorum round.
  bool recent_active = false;
  // Highest ReadIndex heartbeat round this follower acknowledged.
  uint64_t read_ack = 0;
  Inflights inflights;
};

const char* progress_state_name(Progress::State state);

}  // namespace raftnginx::raft
