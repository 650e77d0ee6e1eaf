// Config: the knobs of one consensus core.
#pragma once

#include <cstddef>
#include <cstdint>

#include "raft/types.h"
#include "raftnginx/status.h"

namespace raftnginx::raft {

struct Config {
  NodeId id = kNoNode;
  // A follower that hears nothing from a leader for a random number of ticks in
  // [election_tick, 2 * election_tick) campaigns. Must be well above heartbeat_tick.
  int election_tick = 10;
  // A leader sends heartbeats every heartbeat_tick ticks.
  int heartbeat_tick = 1;
  // The last index the state machine has applied (0 for a volatile one). Entries at or below it
  // are never handed out again; commit is taken as at least this.
  Index applied = 0;
  // Bounds on one AppendEntries message (at least one entry is always sent).
  uint64_t max_msg_bytes = 1 << 20;
  size_t max_msg_entries = 4096;
  // Bound on unacknowledged AppendEntries per follower in replicate state (pipelining window).
  size_t max_inflight_msgs = 256;
  uint64_t max_inflight_bytes = 64 << 20;
  // A leader refuses proposals (Busy) while the entries it appended but has not yet seen applied
  // exceed this many bytes: without a quorum, the log must not grow without limit. 0: no limit.
  uint64_t max_uncommitted_bytes = 64 << 20;
  // Bound on the committed entries handed out in one Ready.
  uint64_t max_apply_bytes = 64 << 20;
  // Thesis 9.6: a candidate first asks whether it could win, so a node that was cut off does not
  // raise the cluster's term when it comes back.
  bool pre_vote = true;
  // Thesis 6.2: a leader that has not heard from a majority for an election timeout steps down;
  // followers that hear from a leader ignore vote requests for that long (leader lease).
  bool check_quorum = true;
  // Seeds the election-timeout randomization.
  uint64_t random_seed = 0;

  Status validate() const;
};

}  // namespace raftnginx::raft
