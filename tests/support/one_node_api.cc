#include "one_node_api.h"

#include <chrono>
#include <future>
#include <thread>

namespace raftnginx::testing {

using namespace std::chrono_literals;

OneNodeApi::OneNodeApi(const std::string& dir, std::unique_ptr<fsm::StateMachine> fsm,
                       std::vector<Route> routes, http::ApiOptions options) {
  node::NodeOptions o;
  o.id = 1;
  o.data_dir = dir;
  o.tick = 5ms;
  o.election_ticks = 4;
  o.heartbeat_ticks = 1;
  o.bootstrap = cluster::Membership::from(raft::ConfState{{1}, {}},
                                          {{1, "id=n1 raft=127.0.0.1:1 http=127.0.0.1:2"}});
  transport_ = std::make_unique<transport::LocalTransport>(&hub_);
  node_ = std::move(node::Node::start(o, std::move(fsm), transport_.get())).value();
  http::ServerOptions so;
  so.listen = "127.0.0.1:0";
  server_ = std::move(http::Server::listen(so)).value();
  server_->serve([](http::Request, http::Respond respond) { respond(http::Response{}); });
  api_ = std::make_unique<http::Api>(std::move(options), node_.get(), std::move(routes),
                                     server_.get(), &client_);
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (node_->status().raft.role != raft::Role::kLeader) {
    RAFTNGINX_CHECK(std::chrono::steady_clock::now() < until, "a one-node cluster elected nobody");
    std::this_thread::sleep_for(5ms);
  }
}

OneNodeApi::~OneNodeApi() {
  api_.reset();
  server_->stop();
  node_->stop();
}

http::Response OneNodeApi::call(std::string method, std::string target, std::string body,
                                http::Headers headers) {
  http::Request r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  r.headers = std::move(headers);
  return call(std::move(r));
}

http::Response OneNodeApi::call(http::Request request) {
  auto answered = std::make_shared<std::promise<http::Response>>();
  auto future = answered->get_future();
  api_->handle(std::move(request),
               [answered](http::Response r) { answered->set_value(std::move(r)); });
  return future.get();
}

}  // namespace raftnginx::testing
