// KvStore: a state machine that is also a key-value store (the hraftd-compatible one), with
// its reads. Both built-in backends implement it.
#pragma once

#include <optional>
#include <string>

#include "fsm/session_table.h"
#include "fsm/state_machine.h"

namespace raftnginx::fsm {

class KvStore : public StateMachine {
 public:
  // The value of `key`, or nullopt if it is not set. Safe from any thread.
  virtual Result<std::optional<std::string>> get(std::string_view key) const = 0;
};

// What applying one KvCommand does, shared by the backends: decode it (or answer a retried
// request from `sessions`), then call `set`/`erase` for its effects, and record the result.
// Returns the result for the client.
template <typename SetFn, typename EraseFn>
ApplyResult apply_kv_command(const Command& cmd, SessionTable& sessions, SetFn&& set,
                             EraseFn&& erase);

}  // namespace raftnginx::fsm

#include "fsm/kv_store_inl.h"
