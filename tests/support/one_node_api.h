// OneNodeApi: the daemon's HTTP API over a one-node cluster in this process (LocalTransport), with
// an HTTP server only for the API's timers: requests are handed to the Api directly, no network.
// For tests of routes and for the HTTP fuzz target. Thread-safe as the Api is; `call` blocks.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "http/api.h"
#include "http/client.h"
#include "http/server.h"
#include "local_transport.h"
#include "node/node.h"
#include "raftnginx/routes.h"
#include "raftnginx/state_machine.h"

namespace raftnginx::testing {

class OneNodeApi {
 public:
  // Starts the node in `dir` with `fsm`, waits until it leads, and mounts `routes` (REQUIRES:
  // Api::check_routes passes them) with `options`.
  OneNodeApi(const std::string& dir, std::unique_ptr<fsm::StateMachine> fsm,
             std::vector<Route> routes, http::ApiOptions options);
  ~OneNodeApi();

  // The answer to `request`, once the Api gives it.
  http::Response call(http::Request request);
  http::Response call(std::string method, std::string target, std::string body = {},
                      http::Headers headers = {});

  http::Api& api() { return *api_; }
  node::Node& node() { return *node_; }

 private:
  transport::LocalHub hub_;
  std::unique_ptr<transport::LocalTransport> transport_;
  std::unique_ptr<node::Node> node_;
  std::unique_ptr<http::Server> server_;
  http::Client client_;
  std::unique_ptr<http::Api> api_;
};

}  // namespace raftnginx::testing
