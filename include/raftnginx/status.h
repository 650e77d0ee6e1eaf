// Status and Result<T>: expected failures are values, not exceptions.
//
// A Status is either ok or carries a code and a message for a person. Result<T> holds a T or a
// non-ok Status. Programming errors (a broken invariant, a contract violated by the caller) are
// not Statuses: they abort through RAFTNGINX_CHECK.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace raftnginx {

class [[nodiscard]] Status {
 public:
  enum class Code : uint8_t {
    kOk = 0,
    kNotFound,
    kCorruption,
    kIOError,
    kInvalidArgument,
    kNotSupported,
    kCompacted,    // the requested log range was discarded by a snapshot
    kUnavailable,  // the requested data does not exist yet
    kNotLeader,    // the operation needs the leader; the message names it when known
    kBusy,         // refused and not done; may succeed later (a change in flight, a transfer)
    // Begun, but whether it took effect is not known (a write that timed out, or whose node
    // stopped or was overtaken by a snapshot): retry with the same request id.
    kOutcomeUnknown,
    kConflict,           // contradicts an earlier request (a request id reused for another request)
    kProtocolViolation,  // a peer broke the protocol; the message names what (raft::Violation)
  };

  Status() = default;
  static Status not_found(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status io_error(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status invalid_argument(std::string msg) {
    return Status(Code::kInvalidArgument, std::move(msg));
  }
  static Status not_supported(std::string msg) {
    return Status(Code::kNotSupported, std::move(msg));
  }
  static Status compacted(std::string msg) { return Status(Code::kCompacted, std::move(msg)); }
  static Status unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status not_leader(std::string msg) { return Status(Code::kNotLeader, std::move(msg)); }
  static Status busy(std::string msg) { return Status(Code::kBusy, std::move(msg)); }
  static Status conflict(std::string msg) { return Status(Code::kConflict, std::move(msg)); }
  static Status protocol_violation(std::string kind) {
    return Status(Code::kProtocolViolation, std::move(kind));
  }
  static Status outcome_unknown(std::string msg) {
    return Status(Code::kOutcomeUnknown, std::move(msg));
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;
  // The same code, the message after `context` (what was being done when it happened).
  Status in_context(const std::string& context) const { return Status(code_, context + message_); }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}

  Code code_ = Code::kOk;
  std::string message_;
};

const char* code_name(Status::Code code);

// Result<T>: a value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : state_(std::move(status)) {
    if (std::get<Status>(state_).ok()) {
      std::fprintf(stderr, "Result constructed from an ok Status\n");
      std::abort();
    }
  }

  bool ok() const { return std::holds_alternative<T>(state_); }
  // REQUIRES: ok().
  const T& value() const& { return std::get<T>(state_); }
  T& value() & { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  const T* operator->() const { return &value(); }
  const T& operator*() const& { return value(); }
  // The Status: ok when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(state_); }

 private:
  std::variant<T, Status> state_;
};

[[noreturn]] void check_failed(const char* file, int line, const char* expr,
                               const std::string& msg);

}  // namespace raftnginx

// Aborts on a broken invariant: a bug in this program, never a condition of the environment.
#define RAFTNGINX_CHECK(cond, msg)                                 \
  do {                                                             \
    if (!(cond)) [[unlikely]]                                      \
      ::raftnginx::check_failed(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)
