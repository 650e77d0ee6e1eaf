// Fuzz target: the key-value store's command decoder, which reads every committed entry.
#include <cstdint>
#include <string_view>

#include "fsm/kv_command.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace raftnginx;
  auto cmd = fsm::decode_kv_command(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!cmd.ok())
    return 0;
  auto again = fsm::decode_kv_command(fsm::encode_kv_command(*cmd));
  RAFTNGINX_CHECK(
      again.ok() && again->op == cmd->op && again->pairs == cmd->pairs && again->keys == cmd->keys,
      "a decoded command does not survive a round trip");
  return 0;
}
