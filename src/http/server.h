// Server: the daemon's HTTP/1.1 server (Boost.Beast), which hands each request to a Handler.
//
// It listens on a TCP address (TLS when given a context: the client's verified certificate, if
// any, names it in Request::certificate_name), and optionally on a Unix socket, plaintext, for
// the node's own nginx. It enforces what every route needs: a body limit (413), a whole request
// within read_timeout (a client that sends slowly is cut off), an idle limit for kept-alive
// connections, and a connection limit that is fair among clients: when it is reached, a new
// connection closes the oldest idle connection of the client that holds the most (if that client
// holds more than the newcomer's), so that one client's thousand idle connections do not lock
// the others out; only when no client holds more is the newcomer refused (503). Accepting backs
// off while the process is out of file descriptors.
//
// The handler answers through Respond exactly once, from any thread and at any time.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "raftnginx/http.h"
#include "raftnginx/status.h"
#include "util/defaults.h"

namespace raftnginx::net {
class TlsContext;
}

namespace raftnginx::http {

using Respond = std::function<void(Response)>;
using Handler = std::function<void(Request, Respond)>;
// Looks at a request's head (no body yet) before its body is read: an answer ends the request
// there (and the connection, since its body was not read). Called on a server thread.
using Screen = std::function<std::optional<Response>(const Request& head)>;

struct ServerOptions {
  std::string listen{defaults::kHttpBind};  // host:port; port 0 picks a free one
  // A Unix socket to listen on as well (plaintext: only the local nginx reaches it); empty: none.
  std::string unix_socket;
  std::shared_ptr<net::TlsContext> tls;  // TLS on `listen`; null: plaintext
  uint64_t max_body = defaults::kMaxBody;
  size_t max_connections = defaults::kMaxConnections;
  std::chrono::milliseconds read_timeout = defaults::kHttpReadTimeout;
  std::chrono::milliseconds idle_timeout = defaults::kHttpIdleTimeout;
  int threads = defaults::kHttpThreads;
};

class Server {
 public:
  // Binds the addresses, so that a taken port fails start-up early; requests wait in the listen
  // queue until serve().
  static Result<std::unique_ptr<Server>> listen(const ServerOptions& options);
  ~Server();

  // Starts answering requests with `handler`; `screen`, if given, sees each request that has a
  // body before the body is read (so that a stranger cannot make the server hold bodies). Call
  // once.
  void serve(Handler handler, Screen screen = nullptr);

  uint16_t port() const;
  // Connections open now.
  size_t connections() const;
  // Runs `fn` on the server's threads after `delay` (unless the server stopped first).
  void after(std::chrono::milliseconds delay, std::function<void()> fn);
  // Runs `fn` soon on server thread `thread`: work a handler should not do on the thread that
  // called it back (the raft loop). Given current_thread() as seen by the handler, the answer
  // `fn` gives reaches the connection without another hop between threads.
  void post(size_t thread, std::function<void()> fn);
  // Which server thread is calling (0 on any other thread).
  static size_t current_thread();
  // Whether a server thread is calling.
  static bool on_server_thread();
  // Stops accepting and closes every connection; waits for the server's threads.
  void stop();

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace raftnginx::http
