// Fuzz target: HTTP requests (request line, path, query, headers, body) parsed as the server
// parses them and handed to the API of a live single-node cluster. Every request must get
// exactly one answer with a valid status and never crash the daemon.
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#include <algorithm>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "kv/kv_backends.h"
#include "one_node_api.h"

namespace {

using namespace raftnginx;

// The built-in key-value store, opened as the daemon opens it (kv/kv_backends.h), behind the API
// of a one-node cluster.
testing::OneNodeApi* start_daemon() {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("raftnginx-fuzz-http-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  DaemonHooks hooks;
  kv::add_backends(&hooks);
  auto memory = std::find_if(hooks.backends.begin(), hooks.backends.end(),
                             [](const BackendSpec& b) { return b.name == "memory"; });
  BackendContext context;
  for (const Flag& flag : hooks.flags)
    context.flags[flag.name] = flag.default_value;
  context.flags["--kv-max-wait"] = "20ms";  // a blocking query must not stall the fuzzer
  Backend kv = std::move(memory->open(context)).value();
  http::ApiOptions options;
  options.self_name = "fuzz";
  options.write_timeout = std::chrono::milliseconds(2000);
  return new testing::OneNodeApi(dir.string(), std::move(kv.state_machine), std::move(kv.routes),
                                 options);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace bhttp = boost::beast::http;
  static testing::OneNodeApi* daemon = start_daemon();  // one cluster for the whole run
  bhttp::request_parser<bhttp::string_body> parser;
  parser.eager(true);
  parser.body_limit(1 << 20);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_done())
    return 0;
  auto& message = parser.get();
  http::Request request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  for (const auto& field : message.base())
    request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  request.body = message.body();
  const http::Response response = daemon->call(std::move(request));
  RAFTNGINX_CHECK(response.status >= 200 && response.status < 600, "an answer without a status");
  return 0;
}
