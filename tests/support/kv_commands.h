// Encoded key-value commands for tests that drive the built-in stores.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "fsm/kv_command.h"

namespace raftnginx::testing {

inline std::string set_cmd(std::vector<std::pair<std::string, std::string>> pairs) {
  return fsm::encode_kv_command(fsm::KvCommand{fsm::KvCommand::Op::kSet, std::move(pairs), {}});
}

inline std::string set_cmd(const std::string& key, const std::string& value) {
  return set_cmd({{key, value}});
}

inline std::string delete_cmd(std::string key) {
  return fsm::encode_kv_command(fsm::KvCommand{fsm::KvCommand::Op::kDelete, {}, {std::move(key)}});
}

}  // namespace raftnginx::testing
