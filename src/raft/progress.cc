#include "raft/progress.h"

#include <algorithm>

namespace raftnginx::raft {

void Inflights::add(Index last, uint64_t bytes) {
  items_.push_back({last, bytes});
  bytes_ += bytes;
}

void Inflights::free_up_to(Index index) {
  while (!items_.empty() && items_.front().last <= index) {
    bytes_ -= items_.front().bytes;
    items_.pop_front();
  }
}

void Inflights::free_first() {
  if (items_.empty())
    return;
  bytes_ -= items_.front().bytes;
  items_.pop_front();
}

void Inflights::reset() {
  items_.clear();
  bytes_ = 0;
}

void Progress::become_probe() {
  // After a snapshot, the follower has at least the snapshot: probe right after it.
  if (state == State::kSnapshot) {
    next_index = std::max(match_index + 1, pending_snapshot + 1);
  } else {
    next_index = match_index + 1;
  }
  state = State::kProbe;
  probe_sent = false;
  pending_snapshot = 0;
  inflights.reset();
}

void Progress::become_replicate() {
  state = State::kReplicate;
  next_index = match_index + 1;
  probe_sent = false;
  pending_snapshot = 0;
  inflights.reset();
}

void Progress::become_snapshot(Index snapshot_index) {
  state = State::kSnapshot;
  probe_sent = false;
  pending_snapshot = snapshot_index;
  inflights.reset();
}

bool Progress::maybe_update(Index index) {
  bool updated = false;
  if (match_index < index) {
    match_index = index;
    updated = true;
    probe_sent = false;
  }
  next_index = std::max(next_index, index + 1);
  return updated;
}

bool Progress::maybe_decrease_to(Index rejected, Index hint) {
  if (state == State::kReplicate) {
    // At or below matchIndex the rejection must be stale: those entries matched.
    if (rejected <= match_index)
      return false;
    next_index = match_index + 1;
    return true;
  }
  // In probe state only the answer to the outstanding probe counts.
  if (next_index == 0 || next_index - 1 != rejected)
    return false;
  next_index = std::max(std::min(rejected, hint + 1), match_index + 1);
  probe_sent = false;
  return true;
}

bool Progress::is_paused() const {
  switch (state) {
    case State::kProbe:
      return probe_sent;
    case State::kReplicate:
      return inflights.full();
    case State::kSnapshot:
      return true;
  }
  return true;
}

const char* progress_state_name(Progress::State state) {
  switch (state) {
    case Progress::State::kProbe:
      return "probe";
    case Progress::State::kReplicate:
      return "replicate";
    case Progress::State::kSnapshot:
      return "snapshot";
  }
  return "unknown";
}

}  // namespace raftnginx::raft
