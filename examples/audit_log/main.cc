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

// One line of printable text: no control characters (a tab is fine), so that a line can never
// forge another, and a trailing newline is dropped.
Status check_line(std::string_view line, size_t max) {
  if (line.empty())
    return Status::invalid_argument("the body must be one line of text");
  if (line.size() > max)
    return Status::invalid_argument("the line is longer than " + std::to_string(max) + " bytes");
  for (const char c : line) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f)
      return Status::invalid_argument("the line holds a control character (one line per append)");
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
