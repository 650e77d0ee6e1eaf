// Client: HTTP requests from the daemon to other members (a join, a write forwarded to the
// leader, a probe). One connection per request; its own I/O thread. With TLS it verifies that the
// member's certificate chains to the cluster's CA and names the cluster (server_name), and
// presents its own certificate.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "raftnginx/http.h"
#include "raftnginx/status.h"

namespace raftnginx::net {
class TlsContext;
}

namespace raftnginx::http {

struct ClientOptions {
  std::shared_ptr<net::TlsContext> tls;  // null: plain HTTP
  std::string server_name;               // the name members' certificates must carry
};

class Client {
 public:
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `request` to `address` (host:port). `done` runs on the client's thread with the
  // answer; Unavailable if the member could not be reached (nothing was sent), OutcomeUnknown if
  // the request went out but no whole answer came within `timeout`.
  void fetch(const std::string& address, Request request, std::chrono::milliseconds timeout,
             std::function<void(Result<Response>)> done);
  // The same, waiting for the answer.
  Result<Response> fetch(const std::string& address, Request request,
                         std::chrono::milliseconds timeout);

  // A body read as it arrives (a watch), waiting until it ends. `on_head` gets the status and
  // headers (no body) once they arrive, then `on_data` each piece of the body, both on the
  // client's thread; either may return false to stop reading. `idle` bounds the wait for the
  // head and between pieces. OK once the body ended or a callback stopped it; Unavailable if
  // the member could not be reached, OutcomeUnknown if the connection broke or went quiet for
  // `idle`, Corruption if a callback threw.
  struct Sink {
    std::function<bool(const Response& head)> on_head;
    std::function<bool(std::string_view piece)> on_data;
  };
  Status stream(const std::string& address, Request request, std::chrono::milliseconds idle,
                Sink sink);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace raftnginx::http
