// KvStore: a state machine that is also a key-value store (the hraftd-compatible one), with
// its reads. Both built-in backends implement it.
#pragma once

#include <optional>
#include <string>

#include "fsm/kv_command.h"
#include "fsm/state_machine.h"

namespace raftnginx::fsm {

class KvStore : public StateMachine {
 public:
  // The value of `key`, or nullopt if it is not set. Safe from any thread.
  virtual Result<std::optional<std::string>> get(std::string_view key) const = 0;
};

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
