// Template definitions for kv_store.h.
#pragma once

#include "fsm/kv_command.h"

namespace raftnginx::fsm {

template <typename SetFn, typename EraseFn>
ApplyResult apply_kv_command(const Command& cmd, SessionTable& sessions, SetFn&& set,
                             EraseFn&& erase) {
  if (!cmd.request_id.empty()) {
    if (auto earlier = sessions.find(cmd.request_id))
      return *earlier;
  }
  ApplyResult result;
  auto decoded = decode_kv_command(cmd.data);
  if (!decoded.ok()) {
    result.status = decoded.status();
  } else if (decoded->op == KvCommand::Op::kSet) {
    for (auto& [key, value] : decoded->pairs)
      set(std::move(key), std::move(value));
  } else {
    for (auto& key : decoded->keys)
      erase(std::move(key));
  }
  if (!cmd.request_id.empty())
    sessions.record(std::string(cmd.request_id), cmd.index, result);
  return result;
}

}  // namespace raftnginx::fsm
