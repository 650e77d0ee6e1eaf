#include "raftnginx/http.h"

#include <strings.h>

#include <nlohmann/json.hpp>

namespace raftnginx::http {

std::string_view find_header(const Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && strncasecmp(key.data(), name.data(), key.size()) == 0)
      return value;
  }
  return {};
}

Response Response::json(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

Response Response::error(int status, std::string_view message) {
  return json(status, nlohmann::json{{"error", message}});
}

Response Response::unavailable(std::string_view message) {
  Response r = error(503, message);
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

Response Response::unauthenticated(std::string_view message) {
  Response r = error(401, message);
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

Response Response::outcome_unknown(std::string_view message) {
  return json(504, nlohmann::json{{"error", message}, {"outcome", "unknown"}});
}

}  // namespace raftnginx::http
