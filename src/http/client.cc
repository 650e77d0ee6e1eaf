#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#include "http/client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <thread>

#include "http/beast_glue.h"
#include "net/address.h"

namespace raftnginx::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

class Client::Impl {
 public:
  Impl()
      : thread([this] {
          auto guard = asio::make_work_guard(io);
          io.run();
        }) {}
  ~Impl() {
    io.stop();
    thread.join();
  }

  static asio::awaitable<void> exchange(std::string address, Request request,
                                        std::chrono::milliseconds timeout,
                                        std::function<void(Result<Response>)> done);

  asio::io_context io;
  std::thread thread;
};

asio::awaitable<void> Client::Impl::exchange(std::string address, Request request,
                                             std::chrono::milliseconds timeout,
                                             std::function<void(Result<Response>)> done) {
  auto fail = [&](const std::string& what, const beast::error_code& ec) {
    done(Status::unavailable(what + " " + address + ": " + ec.message()));
  };
  auto parsed = net::parse_address(address);
  if (!parsed.ok()) {
    done(parsed.status());
    co_return;
  }
  auto executor = co_await asio::this_coro::executor;
  beast::error_code ec;
  tcp::resolver resolver(executor);
  auto endpoints = co_await resolver.async_resolve(parsed->host, std::to_string(parsed->port),
                                                   asio::redirect_error(use_awaitable, ec));
  if (ec) {
    fail("cannot resolve", ec);
    co_return;
  }
  beast::tcp_stream stream(executor);
  stream.expires_after(timeout);
  co_await stream.async_connect(endpoints, asio::redirect_error(use_awaitable, ec));
  if (ec) {
    fail("cannot connect to", ec);
    co_return;
  }
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(request.method), request.target, 11};
  req.set(bhttp::field::host, address);
  headers_to_beast(request.headers, &req);
  req.body() = std::move(request.body);
  req.prepare_payload();
  co_await bhttp::async_write(stream, req, asio::redirect_error(use_awaitable, ec));
  if (ec) {
    fail("cannot send to", ec);
    co_return;
  }
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(1ull << 30);
  co_await bhttp::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
  if (ec) {
    fail("no answer from", ec);
    co_return;
  }
  auto& message = parser.get();
  Response response;
  response.status = static_cast<int>(message.result_int());
  response.headers = headers_from_beast(message.base());
  response.body = std::move(message.body());
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  done(std::move(response));
}

Client::Client() : impl_(std::make_unique<Impl>()) {}

Client::~Client() = default;

void Client::fetch(const std::string& address, Request request, std::chrono::milliseconds timeout,
                   std::function<void(Result<Response>)> done) {
  asio::co_spawn(impl_->io, Impl::exchange(address, std::move(request), timeout, std::move(done)),
                 asio::detached);
}

Result<Response> Client::fetch(const std::string& address, Request request,
                               std::chrono::milliseconds timeout) {
  auto answer = std::make_shared<std::promise<Result<Response>>>();
  auto future = answer->get_future();
  fetch(address, std::move(request), timeout,
        [answer](Result<Response> r) { answer->set_value(std::move(r)); });
  return future.get();
}

}  // namespace raftnginx::http
