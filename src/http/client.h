// Client: HTTP requests from the daemon to other members (a join, a write forwarded to the
// leader). One connection per request; its own I/O thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "http/message.h"
#include "util/status.h"

namespace raftnginx::http {

class Client {
 public:
  Client();
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `request` to `address` (host:port). `done` runs on the client's thread with the
  // answer, or Unavailable if the member could not be reached or answered within `timeout`.
  void fetch(const std::string& address, Request request, std::chrono::milliseconds timeout,
             std::function<void(Result<Response>)> done);
  // The same, waiting for the answer.
  Result<Response> fetch(const std::string& address, Request request,
                         std::chrono::milliseconds timeout);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace raftnginx::http
