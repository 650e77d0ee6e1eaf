// Fuzz target: the raft wire decoder. Any bytes from the network either decode or are refused;
// what decodes encodes back to bytes that decode to the same message.
#include <cstdint>
#include <string_view>

#include "raft/encoding.h"
#include "raftnginx/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace raftnginx;
  auto m = raft::decode_message(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!m.ok())
    return 0;
  auto again = raft::decode_message(raft::encode_message(*m));
  RAFTNGINX_CHECK(again.ok(), "a decoded message does not survive a round trip");
  RAFTNGINX_CHECK(raft::encode_message(*again) == raft::encode_message(*m),
                  "a decoded message re-encodes differently");
  return 0;
}
