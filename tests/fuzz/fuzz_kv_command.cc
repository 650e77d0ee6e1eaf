// Fuzz target: the key-value store's command decoder, which reads every committed entry, and its
// result decoder.
#include <cstdint>
#include <string_view>

#include "fsm/kv_command.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace raftnginx;
  auto cmd = fsm::decode_kv_command(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!cmd.ok())
    return 0;
  auto again = fsm::decode_kv_command(fsm::encode_kv_command(*cmd));
  // A version-1 command comes back as version 2: the same ops, without the legacy mark.
  fsm::KvCommand expected = *cmd;
  expected.legacy = false;
  RAFTNGINX_CHECK(again.ok() && *again == expected,
                  "a decoded command does not survive a round trip");
  auto result = fsm::decode_kv_result(std::string_view(reinterpret_cast<const char*>(data), size));
  if (result.ok()) {
    auto back = fsm::decode_kv_result(fsm::encode_kv_result(*result));
    RAFTNGINX_CHECK(back.ok() && *back == *result,
                    "a decoded result does not survive a round trip");
  }
  return 0;
}
