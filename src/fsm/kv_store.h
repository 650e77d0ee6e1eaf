// KvStore: a state machine that is also a key-value store (the hraftd-compatible one), with
// its reads. Both built-in backends implement it.
#pragma once

#include <optional>
#include <string>

#include "fsm/kv_command.h"
#include "raftnginx/state_machine.h"
#include "util/checksum.h"

namespace raftnginx::fsm {

class KvStore : public StateMachine {
 public:
  // The value of `key`, or nullopt if it is not set. Safe from any thread.
  virtual Result<std::optional<std::string>> get(std::string_view key) const = 0;
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

// What applying one KvCommand does, shared by the backends: decode it, then call `set`/`erase`
// for its effects. Returns the result for the client.
template <typename SetFn, typename EraseFn>
ApplyResult apply_kv_command(const Command& cmd, SetFn&& set, EraseFn&& erase) {
  auto decoded = decode_kv_command(cmd.data);
  if (!decoded.ok())
    return ApplyResult{decoded.status(), {}};
  if (decoded->op == KvCommand::Op::kSet) {
    for (auto& [key, value] : decoded->pairs)
      set(std::move(key), std::move(value));
  } else {
    for (auto& key : decoded->keys)
      erase(std::move(key));
  }
  return ApplyResult{};
}

}  // namespace raftnginx::fsm
