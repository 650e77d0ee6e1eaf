// Encoded key-value commands for tests that drive the built-in stores.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "fsm/kv_command.h"

namespace raftnginx::testing {

inline std::string set_cmd(std::vector<std::pair<std::string, std::string>> pairs) {
  fsm::KvCommand cmd;
  for (auto& [key, value] : pairs)
    cmd.success.push_back(fsm::KvOp{fsm::KvOp::Kind::kPut, std::move(key), std::move(value), 0});
  return fsm::encode_kv_command(cmd);
}

inline std::string set_cmd(const std::string& key, const std::string& value) {
  return set_cmd({{key, value}});
}

inline std::string delete_cmd(std::string key) {
  fsm::KvCommand cmd;
  cmd.success.push_back(fsm::KvOp{fsm::KvOp::Kind::kDelete, std::move(key), {}, 0});
  return fsm::encode_kv_command(cmd);
}

}  // namespace raftnginx::testing
