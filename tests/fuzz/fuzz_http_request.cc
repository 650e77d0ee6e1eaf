// Fuzz target: HTTP requests (request line, path, query, headers, body) parsed as the server
// parses them and handed to the API of a live single-node cluster. Every request must get
// exactly one answer with a valid status and never crash the daemon.
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#include <algorithm>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <thread>

#include "http/api.h"
#include "http/client.h"
#include "http/server.h"
#include "kv/kv_backends.h"
#include "local_transport.h"
#include "node/node.h"

namespace {

using namespace raftnginx;

struct Daemon {
  Daemon() {
    dir = std::filesystem::temp_directory_path() /
          ("raftnginx-fuzz-http-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    node::NodeOptions o;
    o.id = 1;
    o.data_dir = dir.string();
    o.tick = std::chrono::milliseconds(5);
    o.election_ticks = 4;
    o.heartbeat_ticks = 1;
    o.bootstrap = cluster::Membership::from(raft::ConfState{{1}, {}},
                                            {{1, "id=fuzz raft=127.0.0.1:1 http=127.0.0.1:2"}});
    transport = std::make_unique<transport::LocalTransport>(&hub);
    // The built-in key-value store, opened as the daemon opens it (kv/kv_backends.h).
    DaemonHooks hooks;
    kv::add_backends(&hooks);
    auto memory = std::find_if(hooks.backends.begin(), hooks.backends.end(),
                               [](const BackendSpec& b) { return b.name == "memory"; });
    Backend kv = std::move(memory->open(BackendContext{})).value();
    node = std::move(node::Node::start(o, std::move(kv.state_machine), transport.get())).value();
    http::ServerOptions so;
    so.listen = "127.0.0.1:0";
    server = std::move(http::Server::listen(so)).value();
    server->serve([](http::Request, http::Respond respond) { respond(http::Response{}); });
    http::ApiOptions ao;
    ao.self_name = "fuzz";
    ao.write_timeout = std::chrono::milliseconds(2000);
    api = std::make_unique<http::Api>(ao, node.get(), std::move(kv.routes), server.get(), &client);
    while (node->status().raft.role != raft::Role::kLeader)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  std::filesystem::path dir;
  transport::LocalHub hub;
  std::unique_ptr<transport::LocalTransport> transport;
  std::unique_ptr<node::Node> node;
  std::unique_ptr<http::Server> server;
  http::Client client;
  std::unique_ptr<http::Api> api;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace bhttp = boost::beast::http;
  static Daemon* daemon = new Daemon();  // one cluster for the whole run
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
  auto answer = std::make_shared<std::promise<http::Response>>();
  auto future = answer->get_future();
  daemon->api->handle(std::move(request),
                      [answer](http::Response r) { answer->set_value(std::move(r)); });
  const http::Response response = future.get();
  RAFTNGINX_CHECK(response.status >= 200 && response.status < 600, "an answer without a status");
  return 0;
}
