// Routes: the HTTP endpoints a backend mounts beside the daemon's own (/status, /join, ...).
// Public (docs/api.md).
//
// A route's handler gets the request as an Exchange and answers it exactly once, now or later.
// The Exchange does what every backend's endpoint needs the way the built-in key-value store
// does it: read levels, writes through the log with exactly-once retries, the write policy on a
// follower, deadlines, auth, and the X-Raft-* headers.
//
// Threads: handlers run on the HTTP server's threads and must not block; read() and write()
// answer later, without holding a thread. An exception a handler (or its read or answer
// function) throws is answered 500, and the daemon goes on.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "raftnginx/http.h"
#include "raftnginx/replica.h"

namespace raftnginx {

// Who may call a route when the cluster has auth (--auth; docs/security.md). Without auth,
// anyone may call every route.
enum class Access {
  kAnyone,     // no credentials (a health check)
  kPrincipal,  // any known principal: the handler checks each resource with may_read/may_write
  kAdmin,      // admins only
};

// One request to a backend's route. The first answer counts; later ones are dropped, and once it
// is answered (a refused permission too) read() and write() do nothing. A request whose last
// reference is dropped without an answer is answered 500.
class Exchange {
 public:
  virtual ~Exchange() = default;

  virtual const http::Request& request() const = 0;
  // The path, percent-decoded: "/key/a b".
  virtual const std::string& path() const = 0;
  // What the route's trailing {name} matched ("a b" for "/key/{key}"); empty without one.
  virtual const std::string& path_tail() const = 0;
  // A query parameter, decoded; nullopt if absent ("?keys" is present and empty).
  virtual std::optional<std::string> query(std::string_view name) const = 0;

  // Whether the caller may read (write) `resource`, by the read (write) prefixes of its
  // principal (docs/security.md). If not, answers 403 and returns false. Always true without
  // auth. A backend names its resources as it likes: the key-value store by key.
  [[nodiscard]] virtual bool may_read(std::string_view resource) = 0;
  [[nodiscard]] virtual bool may_write(std::string_view resource) = 0;

  // Answers now.
  virtual void respond(http::Response response) = 0;
  // Reads at the level the request asks, then answers what `read` returns, with X-Raft-Index
  // (unless the answer has its own: the index of the view it read) and X-Raft-Served-By:
  //   ?level=stale (the default): at once, from this node's state, with X-Raft-Last-Contact;
  //     &max_lag=DURATION answers 503 if this node has not heard from a leader within it.
  //   ?level=linearizable: after a read barrier (ReadIndex), so the read sees every write
  //     committed before the request; 503 if the barrier cannot be confirmed in time.
  //   ?level=auto: stale on a learner and on a follower that heard from its leader within
  //     max_lag (default: the election timeout), linearizable elsewhere; X-Raft-Read-Level
  //     says which.
  // A node whose storage is damaged or whose state diverged answers 503 instead. `read` runs
  // on a server thread.
  virtual void read(std::function<http::Response()> read) = 0;
  // Proposes `command` with the request's Idempotency-Key, so a retry is applied once. On a
  // follower, follows --write-policy (307 to the leader, forward it, or 403). Once the command
  // is applied, answers what `answer` makes of its outcome (on the raft loop thread: keep it
  // quick). A command the state machine refused (a non-ok ApplyResult) is answered 400 (409
  // for Busy: the state it was prepared against changed; 422 for Conflict) with its message. Not
  // committed within --write-timeout: 504, and the client retries with the same Idempotency-Key.
  virtual void write(std::string command, std::function<http::Response(const Outcome&)> answer) = 0;

  // The node, for what the above do not cover.
  virtual Replica& replica() = 0;
};

struct Route {
  std::string method;  // "GET", "POST", ...
  // An exact path ("/audit"), or one ending in a {name} that matches the rest of the path
  // ("/key/{key}": Exchange::path_tail() is what it matched, possibly empty).
  std::string path;
  Access access = Access::kPrincipal;
  std::function<void(std::shared_ptr<Exchange>)> handle;
};

}  // namespace raftnginx
