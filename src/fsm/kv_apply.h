// What applying a key-value command means, shared by the built-in backends so that both apply
// the same command to the same effect (the state hash and the replica checks depend on it).
//
// A command (kv_command.h) is a transaction at one index: every compare is checked, then the
// success ops (or the failure ops) run in order, each seeing the ones before it.
//   * A key whose deadline is at or before the command's time (the leader's clock when it
//     proposed it) is treated as absent by compares, gets and puts: a put makes it anew.
//   * put: create_index and version carry on from the live record (or start at this index and
//     1); mod_index is this index; a TTL sets the deadline from the command's time, and a put
//     without one clears it. Version-1 commands write records without revisions.
//   * delete and delete-prefix remove what is stored (a delete-prefix at most
//     kMaxDeletePrefixKeys, and without the old values in its events); expire removes a key
//     only if its mod_index is still the one expired and its deadline has passed (a key
//     written again since is kept).
//   * gets return values up to kMaxResultValueBytes together, then revisions only.
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "fsm/kv_store.h"

namespace raftnginx::fsm {

// A backend's keys as one command sees them: reads see the writes made before them in the
// same batch. A non-ok Status is the backend failing (I/O), not the command.
class KvTable {
 public:
  virtual ~KvTable() = default;
  virtual Result<std::optional<KvRecord>> find(const std::string& key) = 0;
  virtual Status put(const std::string& key, const KvRecord& record) = 0;
  virtual Status erase(const std::string& key) = 0;
  // The first `limit` stored keys that begin with `prefix`, in byte order.
  virtual Result<std::vector<std::string>> keys_with_prefix(const std::string& prefix,
                                                            size_t limit) = 0;
};

// The deadlines of the keys that have one, by time. Thread-safe.
class ExpiryIndex {
 public:
  // A key's record changed from `before` to `after` (null: absent).
  void update(const std::string& key, const KvRecord* before, const KvRecord* after);
  void clear();
  std::vector<KvDue> due(uint64_t now_ms, size_t limit) const;

 private:
  mutable std::mutex mu_;
  std::set<std::tuple<uint64_t, std::string, raft::Index>> by_deadline_;
};

// What a command did besides its result: the state hash moved, the deadlines, the events.
struct KvEffects {
  uint64_t* hash;
  ExpiryIndex* expiry;
  std::vector<KvEvent>* events;
};

// Applies `cmd` to `table`. The outer Result fails only when the table does; a command the
// store refuses (malformed, unknown) is an ApplyResult with an error.
Result<ApplyResult> apply_kv(const Command& cmd, KvTable& table, const KvEffects& effects);

}  // namespace raftnginx::fsm
