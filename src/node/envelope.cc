#include "node/envelope.h"

#include "util/coding.h"

namespace raftnginx::node {
namespace {

constexpr uint8_t kVersion = 2;
constexpr char kCheckpoint = 3;
constexpr char kReplacement = 4;

}  // namespace

std::string encode_envelope(std::string_view request_id, uint64_t time_ms,
                            std::string_view command) {
  std::string out;
  out.reserve(13 + request_id.size() + command.size());
  put_u8(&out, kVersion);
  put_bytes(&out, request_id);
  put_u64(&out, time_ms);
  out.append(command);
  return out;
}

std::string encode_checkpoint() {
  return std::string(1, kCheckpoint);
}

bool is_checkpoint(std::string_view data) {
  return data.size() == 1 && data[0] == kCheckpoint;
}

std::string encode_replacement(std::string_view backup) {
  std::string out(1, kReplacement);
  out.append(backup);
  return out;
}

std::optional<std::string_view> replacement_of(std::string_view data) {
  if (data.empty() || data[0] != kReplacement)
    return std::nullopt;
  return data.substr(1);
}

Result<Envelope> decode_envelope(std::string_view data) {
  Reader r(data);
  if (r.u8() != kVersion)
    return Status::corruption("command envelope: unknown version");
  Envelope e;
  e.request_id = r.bytes();
  e.time_ms = r.u64();
  if (!r.ok())
    return Status::corruption("command envelope: malformed");
  e.command = data.substr(13 + e.request_id.size());
  return e;
}

}  // namespace raftnginx::node
