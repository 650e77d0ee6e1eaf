// Request and Response: the HTTP messages the daemon's API handles and sends, as plain values so
// that only server.cc and client.cc need Boost.Beast.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace raftnginx::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

// The value of header `name` (case-insensitive), or "" if absent.
std::string_view find_header(const Headers& headers, std::string_view name);

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query as sent, still percent-encoded
  Headers headers;
  std::string body;
  std::string remote;  // the peer's address, for logs
  // The common name of the client's certificate, when TLS verified one; empty otherwise.
  std::string certificate_name;

  std::string_view header(std::string_view name) const { return find_header(headers, name); }
};

// A body sent as it is produced, in chunks (a watch). The server asks for the next piece once
// the one before is written; next() hands it over at once or later, from any thread, exactly
// once per call. An empty piece ends the body. cancel() says the connection went away: no
// next() follows, and a pending one need not be answered.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  virtual void next(std::function<void(std::string)> piece) = 0;
  virtual void cancel() = 0;
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;
  // If set, the body comes from here (chunked), and `body` is not sent.
  std::shared_ptr<BodyStream> stream;

  std::string_view header(std::string_view name) const { return find_header(headers, name); }
  // A JSON body. Strings that are not valid UTF-8 (keys and values may hold any bytes) are
  // written with U+FFFD in place of the invalid bytes rather than failing.
  static Response json(int status, const nlohmann::json& body);
  // {"error": message}: how every error of the API reads.
  static Response error(int status, std::string_view message);
  // 503 with Retry-After: not done, and safe to retry shortly.
  static Response unavailable(std::string_view message);
  // 504: begun, but whether it took effect is not known; retry with the same Idempotency-Key.
  static Response outcome_unknown(std::string_view message);
  // 401 with WWW-Authenticate: no credentials, or ones nobody has.
  static Response unauthenticated(std::string_view message);
};

}  // namespace raftnginx::http
