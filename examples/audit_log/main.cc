// audit-log-daemon: the raft-nginx daemon with the audit log (audit_log.h) as its backend. It
// takes every flag raft-nginx takes, runs behind the same nginx gateway, and serves:
//
//   POST /audit   the body is one line of text, appended once (retry with the same
//                 Idempotency-Key: it is still appended once); answers {"index": N}
//   GET  /audit   the trail, one "<index> <term> <line>" per line, in log order;
//                 ?level=linearizable sees every append acknowledged before it
//
// With --auth, appending needs write permission on "audit", reading read permission on it.
#include <charconv>
#include <optional>
#include <string>

#include "audit_log.h"
#include "raftnginx/daemon.h"

namespace {

using namespace raftnginx;

constexpr const char* kMaxLineFlag = "--audit-max-line";

Result<size_t> parse_max_line(std::string_view text) {
  size_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value == 0)
    return Status::invalid_argument("'" + std::string(text) + "' is not a positive number");
  return value;
}

// The next code point of valid UTF-8 at `at` (advanced past it), or nullopt: overlong forms,
// surrogates and values past U+10FFFF are invalid.
std::optional<char32_t> next_code_point(std::string_view s, size_t* at) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(*at);
  const size_t length = lead < 0x80         ? 1
                        : lead >> 5 == 0x6  ? 2
                        : lead >> 4 == 0xe  ? 3
                        : lead >> 3 == 0x1e ? 4
                                            : 0;
  if (length == 0 || *at + length > s.size())
    return std::nullopt;
  char32_t c = length == 1 ? lead : lead & (0x7f >> length);
  for (size_t i = 1; i < length; ++i) {
    if (byte(*at + i) >> 6 != 0x2)
      return std::nullopt;
    c = (c << 6) | (byte(*at + i) & 0x3f);
  }
  static constexpr char32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < kSmallest[length] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
    return std::nullopt;
  *at += length;
  return c;
}

// One line of printable UTF-8 text, so that no line can forge another or hide what it says: no
// control characters (C0, DEL, C1; a tab is fine), no line or paragraph separators, no bidi
// controls. A trailing newline was dropped before.
Status check_line(std::string_view line, size_t max) {
  if (line.empty())
    return Status::invalid_argument("the body must be one line of text");
  if (line.size() > max)
    return Status::invalid_argument("the line is longer than " + std::to_string(max) + " bytes");
  for (size_t at = 0; at < line.size();) {
    const std::optional<char32_t> c = next_code_point(line, &at);
    if (!c)
      return Status::invalid_argument("the line is not valid UTF-8");
    const bool control = (*c < 0x20 && *c != '\t') || (*c >= 0x7f && *c <= 0x9f);
    const bool separator = *c == 0x2028 || *c == 0x2029;
    const bool bidi = *c == 0x061c || *c == 0x200e || *c == 0x200f ||
                      (*c >= 0x202a && *c <= 0x202e) || (*c >= 0x2066 && *c <= 0x2069);
    if (control || separator || bidi)
      return Status::invalid_argument(
          "the line holds a control, separator or bidi character (one plain line per append)");
  }
  return Status();
}

http::Response text(int status, std::string body, const char* type) {
  http::Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", type);
  r.body = std::move(body);
  return r;
}

void append(size_t max_line, const std::shared_ptr<Exchange>& ex) {
  std::string line = ex->request().body;
  if (line.ends_with('\n'))
    line.pop_back();
  if (Status s = check_line(line, max_line); !s.ok())
    return ex->respond(http::Response::error(400, s.message()));
  if (!ex->may_write("audit"))
    return;
  ex->write(std::move(line), [](const Outcome& outcome) {
    return text(200, "{\"index\": " + std::to_string(outcome.index) + "}", "application/json");
  });
}

void trail(const examples::AuditLog* log, const std::shared_ptr<Exchange>& ex) {
  if (!ex->may_read("audit"))
    return;
  ex->read([log] {
    auto contents = log->contents();
    if (!contents.ok())
      return http::Response::error(500, contents.status().message());
    return text(200, std::move(contents).value(), "text/plain; charset=utf-8");
  });
}

Result<Backend> open_audit_log(const BackendContext& ctx) {
  auto log = examples::AuditLog::open(ctx.env, ctx.dir + "/audit.log");
  if (!log.ok())
    return log.status();
  const examples::AuditLog* view = log->get();
  // Checked when the command line was parsed.
  const size_t max_line = parse_max_line(ctx.flag(kMaxLineFlag)).value();
  Backend backend;
  backend.state_machine = std::move(log).value();
  backend.routes = {
      {"POST", "/audit", Access::kPrincipal,
       [max_line](std::shared_ptr<Exchange> ex) { append(max_line, ex); }},
      {"GET", "/audit", Access::kPrincipal,
       [view](std::shared_ptr<Exchange> ex) { trail(view, ex); }},
  };
  return backend;
}

}  // namespace

int main(int argc, char** argv) {
  DaemonHooks hooks;
  hooks.program = "audit-log-daemon";
  hooks.version = AUDIT_LOG_VERSION;
  hooks.description = "audit-log-daemon: an append-only audit trail replicated by raft-nginx.";
  hooks.backends.push_back(
      {"audit-log", "the audit trail, a file in <data-dir>/fsm", open_audit_log});
  hooks.flags.push_back({kMaxLineFlag, "The longest line an append may hold (bytes)", "4096",
                         [](const std::string& v) { return parse_max_line(v).status(); }});
  return run_daemon(argc, argv, hooks);
}
