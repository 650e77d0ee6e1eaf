// KvStore: a state machine that is also a key-value store (the hraftd-compatible one, with
// revisions, listing, compare-and-set, TTL and change events), with its reads. Both built-in
// backends implement it; kv_apply.h holds what applying a command means, shared by both.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fsm/kv_command.h"
#include "raftnginx/state_machine.h"
#include "util/checksum.h"

namespace raftnginx::fsm {

// One change to one key, as watchers see it.
struct KvEvent {
  enum class Type : uint8_t { kPut, kDelete, kExpire };
  raft::Index index = 0;
  Type type = Type::kPut;
  std::string key;
  KvRecord record;  // kPut: the record written; otherwise empty
  std::optional<std::string> prev_value;
};

// Told about every change as it is applied. Threads: called on the apply thread (and from
// restore()), so it must be quick and must not call back into the store.
class KvObserver {
 public:
  virtual ~KvObserver() = default;
  // A batch was applied: its changes in log order (possibly none); `last` is its last index.
  virtual void applied(std::vector<KvEvent> events, raft::Index last) = 0;
  // The state was replaced by a snapshot's, which covers the log up to `index`: the changes
  // before it are not known one by one.
  virtual void restored(raft::Index index) = 0;
};

// A page of keys under a prefix, as of one index.
struct KvListing {
  raft::Index index = 0;  // the last index whose effects the page shows
  std::vector<std::pair<std::string, KvRecord>> entries;
  bool truncated = false;  // more keys follow the last one
};

// A key whose deadline has passed, and the revision whose deadline it is.
struct KvDue {
  std::string key;
  raft::Index mod_index = 0;
};

class KvStore : public StateMachine {
 public:
  std::string_view request_identity(std::string_view command) const override {
    return kv_request_identity(command);
  }
  // The record of `key`, or nullopt if it is not set. Safe from any thread.
  virtual Result<std::optional<KvRecord>> get(std::string_view key) const = 0;
  // The keys that begin with `prefix` and sort after `after` (all, if empty), in byte order, as
  // of one index: at most `limit` of them, and no more once `max_bytes` of keys and values are
  // taken (at least one). Keys whose deadline is at or before `now_ms` are left out (0: none).
  // `keys_only` leaves the values out. Safe from any thread.
  virtual Result<KvListing> list(std::string_view prefix, std::string_view after, size_t limit,
                                 size_t max_bytes, bool keys_only, uint64_t now_ms) const = 0;
  // Up to `limit` keys whose deadline is at or before `now_ms`, earliest first. Safe from any
  // thread; kept in memory, rebuilt when the store opens or restores.
  virtual std::vector<KvDue> due(uint64_t now_ms, size_t limit) const = 0;
  // Set once, before the node starts applying; the observer outlives the store's use.
  virtual void set_observer(KvObserver* observer) = 0;
};

// The hash of one key and its value. A store's state hash is the sum (mod 2^64) of its pairs'
// hashes: independent of order, so it is kept up to date per write (take the old pair's out, put
// the new one's in) and equal on every replica holding the same pairs.
inline uint64_t kv_pair_hash(std::string_view key, std::string_view value) {
  uint64_t h = fnv1a64(key) ^ (fnv1a64(value) * 0x9e3779b97f4a7c15ull);
  h ^= h >> 31;  // a final mix, so that sums of related pairs do not cancel out
  h *= 0xbf58476d1ce4e5b9ull;
  return h ^ (h >> 29);
}

// A record's share of the state hash: its pair's, with its revisions mixed in. A record without
// revisions (written before them) hashes as its pair did then, so a store's hash does not change
// when it is upgraded.
inline uint64_t kv_record_hash(std::string_view key, const KvRecord& r) {
  const uint64_t pair = kv_pair_hash(key, r.value);
  if (r.create_index == 0 && r.mod_index == 0 && r.version == 0 && r.expires_at_ms == 0)
    return pair;
  uint64_t m = r.create_index * 0x9e3779b97f4a7c15ull ^ r.mod_index * 0xc2b2ae3d27d4eb4full ^
               r.version * 0x165667b19e3779f9ull ^ r.expires_at_ms * 0x27d4eb2f165667c5ull;
  m ^= m >> 33;
  m *= 0xff51afd7ed558ccdull;
  return pair ^ (m ^ (m >> 33));
}

}  // namespace raftnginx::fsm
