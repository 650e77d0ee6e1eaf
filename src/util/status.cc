#include "raftnginx/status.h"

namespace raftnginx {

const char* code_name(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return "OK";
    case Status::Code::kNotFound:
      return "NotFound";
    case Status::Code::kCorruption:
      return "Corruption";
    case Status::Code::kIOError:
      return "IOError";
    case Status::Code::kInvalidArgument:
      return "InvalidArgument";
    case Status::Code::kNotSupported:
      return "NotSupported";
    case Status::Code::kCompacted:
      return "Compacted";
    case Status::Code::kUnavailable:
      return "Unavailable";
    case Status::Code::kNotLeader:
      return "NotLeader";
    case Status::Code::kBusy:
      return "Busy";
    case Status::Code::kOutcomeUnknown:
      return "OutcomeUnknown";
    case Status::Code::kConflict:
      return "Conflict";
    case Status::Code::kProtocolViolation:
      return "ProtocolViolation";
  }
  return "Unknown";
}

std::string Status::to_string() const {
  if (ok())
    return "OK";
  std::string out = code_name(code_);
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

void check_failed(const char* file, int line, const char* expr, const std::string& msg) {
  std::fprintf(stderr, "%s:%d: check failed: %s: %s\n", file, line, expr, msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace raftnginx
