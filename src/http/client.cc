#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#include "http/client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <future>
#include <thread>

#include "http/beast_glue.h"
#include "net/address.h"
#include "net/tls.h"

namespace raftnginx::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

class Client::Impl {
 public:
  explicit Impl(ClientOptions o)
      : options(std::move(o)), thread([this] {
          auto guard = asio::make_work_guard(io);
          io.run();
        }) {}
  ~Impl() {
    io.stop();
    thread.join();
  }

  // With a sink, the body goes to it as it arrives (stream()); the answer then has none.
  asio::awaitable<void> exchange(std::string address, Request request,
                                 std::chrono::milliseconds timeout,
                                 std::function<void(Result<Response>)> done,
                                 const Sink* sink = nullptr);
  template <typename Stream>
  static asio::awaitable<Result<Response>> roundtrip(Stream& stream, const std::string& address,
                                                     Request request,
                                                     std::chrono::milliseconds timeout,
                                                     const Sink* sink);
  template <typename Stream>
  static asio::awaitable<Result<Response>> read_streamed(Stream& stream, beast::flat_buffer& buffer,
                                                         const std::string& address,
                                                         std::chrono::milliseconds idle,
                                                         const Sink& sink);

  const ClientOptions options;
  asio::io_context io;
  std::thread thread;
};

asio::awaitable<void> Client::Impl::exchange(std::string address, Request request,
                                             std::chrono::milliseconds timeout,
                                             std::function<void(Result<Response>)> done,
                                             const Sink* sink) {
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
    done(Status::unavailable("cannot resolve " + address + ": " + ec.message()));
    co_return;
  }
  beast::tcp_stream stream(executor);
  stream.expires_after(timeout);
  co_await stream.async_connect(endpoints, asio::redirect_error(use_awaitable, ec));
  if (ec) {
    done(Status::unavailable("cannot connect to " + address + ": " + ec.message()));
    co_return;
  }
  if (!options.tls) {
    Result<Response> r = co_await roundtrip(stream, address, std::move(request), timeout, sink);
    done(std::move(r));
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> tls(std::move(stream), *options.tls->current());
  SSL_set1_host(tls.native_handle(), options.server_name.c_str());
  co_await tls.async_handshake(asio::ssl::stream_base::client,
                               asio::redirect_error(use_awaitable, ec));
  if (ec) {
    done(Status::unavailable("TLS with " + address + ": " + ec.message()));
    co_return;
  }
  Result<Response> r = co_await roundtrip(tls, address, std::move(request), timeout, sink);
  done(std::move(r));
}

template <typename Stream>
asio::awaitable<Result<Response>> Client::Impl::roundtrip(Stream& stream,
                                                          const std::string& address,
                                                          Request request,
                                                          std::chrono::milliseconds timeout,
                                                          const Sink* sink) {
  beast::error_code ec;
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(request.method), request.target, 11};
  req.set(bhttp::field::host, address);
  headers_to_beast(request.headers, &req);
  req.body() = std::move(request.body);
  req.prepare_payload();
  co_await bhttp::async_write(stream, req, asio::redirect_error(use_awaitable, ec));
  // From here on the member may have taken the request: a failure leaves its outcome unknown.
  if (ec)
    co_return Status::outcome_unknown("cannot send to " + address + ": " + ec.message());
  beast::flat_buffer buffer;
  if (sink != nullptr)
    co_return co_await read_streamed(stream, buffer, address, timeout, *sink);
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(1ull << 30);
  co_await bhttp::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
  if (ec)
    co_return Status::outcome_unknown("no answer from " + address + ": " + ec.message());
  auto& message = parser.get();
  Response response;
  response.status = static_cast<int>(message.result_int());
  response.headers = headers_from_beast(message.base());
  response.body = std::move(message.body());
  beast::get_lowest_layer(stream).close();
  co_return response;
}

// Runs a sink's callback: its answer, or false with `error` set if it threw (a coroutine spawned
// detached would swallow the exception and its caller would wait forever).
template <typename Callback>
bool deliver(Callback callback, std::string* error) {
  try {
    return callback();
  } catch (const std::exception& e) {
    *error = e.what();
    return false;
  }
}

template <typename Stream>
asio::awaitable<Result<Response>> Client::Impl::read_streamed(Stream& stream,
                                                              beast::flat_buffer& buffer,
                                                              const std::string& address,
                                                              std::chrono::milliseconds idle,
                                                              const Sink& sink) {
  beast::error_code ec;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(boost::none);  // a stream has no end in view; each piece is bounded below
  beast::get_lowest_layer(stream).expires_after(idle);
  co_await bhttp::async_read_header(stream, buffer, parser,
                                    asio::redirect_error(use_awaitable, ec));
  if (ec)
    co_return Status::outcome_unknown("no answer from " + address + ": " + ec.message());
  Response head;
  head.status = static_cast<int>(parser.get().result_int());
  head.headers = headers_from_beast(parser.get().base());
  std::string refused;  // what a callback threw at
  bool reading = deliver([&] { return sink.on_head(head); }, &refused);
  char piece[16 * 1024];
  while (reading && !parser.is_done()) {
    parser.get().body().data = piece;
    parser.get().body().size = sizeof piece;
    beast::get_lowest_layer(stream).expires_after(idle);
    co_await bhttp::async_read_some(stream, buffer, parser,
                                    asio::redirect_error(use_awaitable, ec));
    if (ec == bhttp::error::need_buffer)
      ec = {};
    if (ec)
      co_return Status::outcome_unknown("the stream from " + address + " broke: " + ec.message());
    const size_t got = sizeof piece - parser.get().body().size;
    if (got > 0)
      reading = deliver([&] { return sink.on_data(std::string_view(piece, got)); }, &refused);
  }
  beast::get_lowest_layer(stream).close();
  if (!refused.empty())
    co_return Status::corruption("an answer from " + address + " the reader refused: " + refused);
  co_return head;
}

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Client::~Client() = default;

void Client::fetch(const std::string& address, Request request, std::chrono::milliseconds timeout,
                   std::function<void(Result<Response>)> done) {
  asio::co_spawn(impl_->io, impl_->exchange(address, std::move(request), timeout, std::move(done)),
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

Status Client::stream(const std::string& address, Request request, std::chrono::milliseconds idle,
                      Sink sink) {
  auto answer = std::make_shared<std::promise<Status>>();
  auto future = answer->get_future();
  asio::co_spawn(impl_->io,
                 impl_->exchange(
                     address, std::move(request), idle,
                     [answer](Result<Response> r) { answer->set_value(r.status()); }, &sink),
                 asio::detached);
  return future.get();  // `sink` outlives the exchange: it ends before the promise is kept
}

}  // namespace raftnginx::http
