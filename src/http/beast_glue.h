// Conversions between our plain messages and Beast's, shared by server.cc and client.cc.
// Include only from those two files: Beast is heavy to compile.
#pragma once

#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#include <boost/beast/http.hpp>

#include "raftnginx/http.h"

namespace raftnginx::http {

template <typename Fields>
Headers headers_from_beast(const Fields& fields) {
  Headers out;
  for (const auto& field : fields)
    out.emplace_back(std::string(field.name_string()), std::string(field.value()));
  return out;
}

template <typename Message>
void headers_to_beast(const Headers& headers, Message* message) {
  for (const auto& [name, value] : headers)
    message->insert(name, value);
}

}  // namespace raftnginx::http
