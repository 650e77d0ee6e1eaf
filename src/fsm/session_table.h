// SessionTable: client sessions (Raft thesis 6.3) for exactly-once writes across retries.
//
// A client that never saw the answer to a write (a leader change, a timeout) retries it with the
// same request id. The table remembers the result of every request id applied within the last
// `window` log indexes; a retry inside the window is answered with the first result and is not
// applied again. The table is replicated state: a backend stores it with its data (in the same
// write batch) and in its snapshots, and eviction depends only on log indexes, so every node
// forgets the same ids at the same point.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "fsm/state_machine.h"

namespace raftnginx::fsm {

class SessionTable {
 public:
  static constexpr uint64_t kDefaultWindow = 100000;

  explicit SessionTable(uint64_t window = kDefaultWindow) : window_(window) {}

  // The result recorded for `id`, if it is still remembered.
  std::optional<ApplyResult> find(std::string_view id) const;
  // Records the result of request `id`, applied at `index`.
  void record(std::string id, raft::Index index, const ApplyResult& result);
  // Forgets the ids applied more than `window` indexes before `index`; returns them so that a
  // durable backend can delete its copies.
  std::vector<std::string> evict(raft::Index index);
  size_t size() const { return by_id_.size(); }
  void clear();

  // One record, as a durable backend stores it.
  static std::string encode_record(raft::Index index, const ApplyResult& result);
  // Loads one stored record (at start-up or from a snapshot).
  Status load_record(std::string id, std::string_view encoded);

  // The whole table, for snapshots of backends that hold it in memory.
  std::string serialize() const;
  Status parse(std::string_view data);

 private:
  struct Record {
    raft::Index index;
    ApplyResult result;
  };
  uint64_t window_;
  std::unordered_map<std::string, Record> by_id_;
  std::map<raft::Index, std::string> by_index_;
};

}  // namespace raftnginx::fsm
