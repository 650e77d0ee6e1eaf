#include "fsm/kv_command.h"

#include "util/coding.h"

namespace raftnginx::fsm {
namespace {
constexpr uint8_t kVersion = 1;
}  // namespace

std::string encode_kv_command(const KvCommand& cmd) {
  std::string out;
  put_u8(&out, kVersion);
  put_u8(&out, static_cast<uint8_t>(cmd.op));
  if (cmd.op == KvCommand::Op::kSet) {
    put_u32(&out, static_cast<uint32_t>(cmd.pairs.size()));
    for (const auto& [key, value] : cmd.pairs) {
      put_bytes(&out, key);
      put_bytes(&out, value);
    }
  } else {
    put_u32(&out, static_cast<uint32_t>(cmd.keys.size()));
    for (const auto& key : cmd.keys)
      put_bytes(&out, key);
  }
  return out;
}

Result<KvCommand> decode_kv_command(std::string_view data) {
  Reader r(data);
  const uint8_t version = r.u8();
  if (!r.ok())
    return Status::invalid_argument("empty command");
  if (version != kVersion)
    return Status::not_supported("command format version " + std::to_string(version));
  const uint8_t op = r.u8();
  KvCommand cmd;
  // A key (or key and value) takes at least its length field(s).
  const uint32_t count =
      r.count(op == static_cast<uint8_t>(KvCommand::Op::kSet) ? 8 : 4, UINT32_MAX);
  if (op == static_cast<uint8_t>(KvCommand::Op::kSet)) {
    cmd.op = KvCommand::Op::kSet;
    for (uint32_t i = 0; i < count && r.ok(); ++i) {
      std::string key(r.bytes());
      std::string value(r.bytes());
      cmd.pairs.emplace_back(std::move(key), std::move(value));
    }
  } else if (op == static_cast<uint8_t>(KvCommand::Op::kDelete)) {
    cmd.op = KvCommand::Op::kDelete;
    for (uint32_t i = 0; i < count && r.ok(); ++i)
      cmd.keys.emplace_back(r.bytes());
  } else if (r.ok()) {
    return Status::not_supported("command op " + std::to_string(op));
  }
  if (!r.done())
    return Status::invalid_argument("malformed command");
  return cmd;
}

}  // namespace raftnginx::fsm
