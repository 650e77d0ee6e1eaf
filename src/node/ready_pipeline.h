// ReadyPipeline: the one implementation of raw_node.h's Ready contract, shared by the node and
// the simulator, so that the 20,000-seed runs prove the code that runs in production.
//
// Each Ready is handled in two steps, so that the caller decides when its disk write completes:
//
//   begin()   what may happen before the Ready is durable:
//             - install the snapshot, if any (the sink restores the state machine from it and
//               records it in the log);
//             - send the messages that may overlap the write (a leader's appends and
//               heartbeats: raw_node.h, step 2, the exception of thesis 10.2.1) and stream the
//               snapshots it offers;
//             - on a leader, apply the committed entries that an earlier Ready already made
//               durable: their clients need not wait for this Ready's fsync. The state machine
//               never gets ahead of the durable log.
//   finish()  the write (entries and hard state, fsync if must_sync), then the other messages,
//             the remaining committed entries, the read states, and advance().
//
// The node runs the two back to back on its raft loop. The simulator runs finish() when its
// simulated disk completes the write, and crashes nodes in between: after messages went out,
// or entries were applied, but before the Ready was durable.
//
// Not thread-safe: the thread that owns the core calls everything here, and the sink's methods
// run on that thread.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "raft/raw_node.h"
#include "util/clock.h"
#include "util/histogram.h"

namespace raftnginx::node {

// What the pipeline acts on: the durable log, the network and the state machine.
class ReadySink {
 public:
  virtual ~ReadySink() = default;
  // The hard state as last stored.
  virtual const raft::HardState& stored_hard_state() const = 0;
  // The last entry stored; every stored entry is durable (entries are always synced).
  virtual raft::Index stored_last_index() const = 0;
  // Appends entries (replacing a conflicting suffix) and the hard state as one write; durable
  // when it returns if `sync`. An error stops the node.
  virtual Status save(const std::vector<raft::Entry>& entries,
                      const std::optional<raft::HardState>& hard_state, bool sync) = 0;
  // Replaces the state machine with the received snapshot `meta` and restarts the log after it.
  virtual Status install_snapshot(const raft::SnapshotMeta& meta) = 0;
  virtual void send(std::vector<raft::Message> messages) = 0;
  // Streams the snapshot a kSnapshot message offers, then the message; reports the outcome to
  // the core (RawNode::report_snapshot) when the stream ends.
  virtual void send_snapshot(raft::Message m) = 0;
  // Applies committed entries (consecutive, in order) to the state machine and answers their
  // clients. An error stops the node.
  virtual Status apply(std::span<const raft::Entry> committed) = 0;
  // Read points confirmed by the leader: each is linearizable once its index is applied.
  virtual void read_states(std::vector<raft::ReadState> states) = 0;
};

class ReadyPipeline {
 public:
  // `sync_latency`, if given, records how long each synced write took on `clock`.
  ReadyPipeline(raft::RawNode* core, ReadySink* sink, const Clock* clock,
                Histogram* sync_latency = nullptr)
      : core_(core), sink_(sink), clock_(clock), sync_latency_(sync_latency) {}

  // A Ready between begin() and finish().
  struct InFlight {
    raft::Ready ready;
    std::vector<raft::Message> after_save;  // messages that wait for the write
    size_t applied_early = 0;               // committed entries already applied
    size_t sent_early = 0;                  // messages already sent
  };

  Result<InFlight> begin(raft::Ready rd);
  Status finish(InFlight& in_flight);
  // Both, back to back: the node's way.
  Status run(raft::Ready rd);

 private:
  raft::RawNode* core_;
  ReadySink* sink_;
  const Clock* clock_;
  Histogram* sync_latency_;
};

}  // namespace raftnginx::node
