// The commands of the built-in key-value store, and their versioned binary encoding.
//
//   version (1) | op (1) | op-specific body
//     op 1, set:     count (4) | count x [key (4 + n) | value (4 + n)]   all set atomically
//     op 2, delete:  count (4) | count x key (4 + n)
//
// A decoder that meets a version or op it does not know says NotSupported, so that a node of an
// older release refuses a newer command instead of misreading it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "raftnginx/status.h"

namespace raftnginx::fsm {

struct KvCommand {
  enum class Op : uint8_t { kSet = 1, kDelete = 2 };
  Op op = Op::kSet;
  std::vector<std::pair<std::string, std::string>> pairs;  // kSet
  std::vector<std::string> keys;                           // kDelete
};

std::string encode_kv_command(const KvCommand& cmd);
Result<KvCommand> decode_kv_command(std::string_view data);

}  // namespace raftnginx::fsm
