// SessionTable: client sessions (Raft thesis 6.3), the node's exactly-once guarantee for every
// backend.
//
// A client that never saw the answer to a write (a leader change, a timeout) retries it with the
// same request id (Idempotency-Key). The node looks the id up before a command reaches the state
// machine: a retry is answered with the first request's result and is not applied again; an id
// reused for a different command is refused (Conflict).
//
// The table is replicated state, derived from the log alone: every node applies the same entries
// in the same order, and eviction depends only on what the entries say (their indexes, the
// leader's timestamps, their sizes), so every node forgets the same ids at the same point. An id
// is forgotten once it is older than the entry window or the age limit, or when the table's
// bytes exceed their limit (oldest first). The node stores the table in each snapshot and, for a
// durable backend, rebuilds the part after the snapshot from the log at start-up; a result that
// only the backend's files held before a restart is then unknown (result_known false).
//
// Not thread-safe: the raft loop owns it.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <unordered_map>

#include "raftnginx/state_machine.h"
#include "util/defaults.h"

namespace raftnginx::node {

struct SessionLimits {
  uint64_t window_entries = defaults::kSessionWindowEntries;
  std::chrono::milliseconds max_age = defaults::kSessionMaxAge;
  uint64_t max_bytes = defaults::kSessionMaxBytes;
};

class SessionTable {
 public:
  struct Record {
    raft::Index index = 0;      // the entry that carried the request
    uint64_t time_ms = 0;       // the leader's clock when it was proposed
    uint64_t command_hash = 0;  // fnv1a64 of the command, to tell a retry from a reuse
    bool result_known = true;
    fsm::ApplyResult result;
  };

  explicit SessionTable(SessionLimits limits = {}) : limits_(limits) {}

  const Record* find(std::string_view id) const;
  // Records request `id`; replaces an older record of the same id.
  void record(const std::string& id, Record rec);
  // Forgets what the limits no longer cover as of the entry at `index`, proposed at `time_ms`.
  void evict(raft::Index index, uint64_t time_ms);
  size_t size() const { return by_id_.size(); }
  uint64_t bytes() const { return bytes_; }
  void clear();

  // The whole table, for snapshots.
  std::string serialize() const;
  static Result<SessionTable> parse(std::string_view data, SessionLimits limits);

 private:
  static uint64_t cost(const std::string& id, const Record& rec);
  void erase_oldest();

  SessionLimits limits_;
  std::unordered_map<std::string, Record> by_id_;
  std::map<raft::Index, std::string> by_index_;  // oldest first
  uint64_t bytes_ = 0;
};

}  // namespace raftnginx::node
