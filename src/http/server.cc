#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#include "http/server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "http/beast_glue.h"
#include "net/listen.h"

namespace raftnginx::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

using BeastResponse = bhttp::response<bhttp::string_body>;

thread_local size_t this_server_thread = 0;  // see Server::current_thread()

BeastResponse to_beast(const Response& r, unsigned version, bool keep_alive) {
  BeastResponse out{static_cast<bhttp::status>(r.status), version};
  out.set(bhttp::field::server, "raft-nginx");
  headers_to_beast(r.headers, &out);
  if (r.header("Content-Type").empty() && !r.body.empty())
    out.set(bhttp::field::content_type, "application/json");
  out.body() = r.body;
  out.keep_alive(keep_alive);
  out.prepare_payload();
  return out;
}

// Where a handler's Response meets the connection's coroutine. A handler that answers at once
// (a stale read) is taken without suspending; one that answers later, from any thread (a write,
// once committed), resumes the coroutine on its own executor.
class Answer {
 public:
  void deliver(Response response) {
    std::unique_lock lock(mu_);
    RAFTNGINX_CHECK(!answered_, "a request was answered twice");
    answered_ = true;
    if (!resume_) {
      response_ = std::move(response);
      return;
    }
    auto resume = std::move(resume_);
    lock.unlock();
    resume(std::move(response));
  }

  // The Response, if it was given before the coroutine asked.
  std::optional<Response> take() {
    std::lock_guard lock(mu_);
    return std::exchange(response_, std::nullopt);
  }

  template <typename Token>
  auto wait(Token&& token) {
    return asio::async_initiate<Token, void(Response)>(
        [this](auto completion) {
          auto executor = asio::get_associated_executor(completion);
          auto shared = std::make_shared<decltype(completion)>(std::move(completion));
          auto resume = [executor, shared](Response response) {
            // Inline when the answer comes from the connection's own thread (Server::post to
            // the thread that took the request); a post from any other thread.
            asio::dispatch(executor, [shared, response = std::move(response)]() mutable {
              (*shared)(std::move(response));
            });
          };
          std::unique_lock lock(mu_);
          if (!response_) {
            resume_ = std::move(resume);
            return;
          }
          Response response = std::move(*response_);
          response_.reset();
          lock.unlock();
          resume(std::move(response));
        },
        token);
  }

 private:
  std::mutex mu_;
  bool answered_ = false;
  std::optional<Response> response_;
  std::function<void(Response)> resume_;
};

}  // namespace

class Server::Impl {
 public:
  explicit Impl(ServerOptions options) : opt(std::move(options)) {
    // One io_context per thread, each connection on one of them: no strands, and a context's
    // scheduler rarely meets another thread on its lock.
    for (int i = 0; i < std::max(1, opt.threads); ++i)
      contexts.push_back(std::make_unique<asio::io_context>(1));
    acceptor = std::make_unique<tcp::acceptor>(*contexts.front());
  }

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(tcp::socket socket);
  asio::awaitable<void> refuse(tcp::socket socket);

  const ServerOptions opt;
  Handler handler;
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::atomic<size_t> connections{0};
  uint16_t port = 0;
  std::vector<std::thread> threads;
};

asio::awaitable<void> Server::Impl::accept_loop() {
  for (size_t accepted = 0;; ++accepted) {
    beast::error_code ec;
    asio::io_context& context = *contexts[accepted % contexts.size()];
    tcp::socket socket =
        co_await acceptor->async_accept(context, asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted)
      co_return;
    if (ec) {
      spdlog::warn("http: accept failed: {}", ec.message());
      continue;
    }
    const auto executor = socket.get_executor();
    if (connections.fetch_add(1) >= opt.max_connections) {
      asio::co_spawn(executor, refuse(std::move(socket)), asio::detached);
    } else {
      asio::co_spawn(executor, serve(std::move(socket)), asio::detached);
    }
  }
}

asio::awaitable<void> Server::Impl::refuse(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  stream.expires_after(opt.read_timeout);
  BeastResponse res =
      to_beast(Response::unavailable("too many connections; retry later"), 11, false);
  beast::error_code ec;
  co_await bhttp::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  connections.fetch_sub(1);
}

asio::awaitable<void> Server::Impl::serve(tcp::socket socket) {
  beast::error_code ec;
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  const std::string remote =
      ec ? std::string("?") : peer.address().to_string() + ":" + std::to_string(peer.port());
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    // An idle kept-alive connection may wait long for its next request; once a request has
    // begun, all of it must arrive within read_timeout.
    if (buffer.size() == 0) {
      stream.expires_after(opt.idle_timeout);
      const size_t n = co_await stream.async_read_some(buffer.prepare(64 * 1024),
                                                       asio::redirect_error(use_awaitable, ec));
      if (ec)
        break;
      buffer.commit(n);
    }
    stream.expires_after(opt.read_timeout);
    bhttp::request_parser<bhttp::string_body> parser;
    parser.body_limit(opt.max_body);
    co_await bhttp::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
    if (ec == bhttp::error::body_limit) {
      Response too_large = Response::error(
          413, "request body larger than the limit of " + std::to_string(opt.max_body) + " bytes");
      BeastResponse res = to_beast(too_large, 11, false);
      co_await bhttp::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
      break;
    }
    if (ec) {
      // A timeout has closed the socket already: nothing can be answered then.
      if (ec != bhttp::error::end_of_stream && ec != asio::error::eof &&
          ec != beast::error::timeout) {
        BeastResponse res =
            to_beast(Response::error(400, "malformed HTTP request: " + ec.message()), 11, false);
        co_await bhttp::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
      }
      break;
    }
    auto& message = parser.get();
    const unsigned version = message.version();
    const bool keep_alive = message.keep_alive();
    Request request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    request.headers = headers_from_beast(message.base());
    request.body = std::move(message.body());
    request.remote = remote;
    stream.expires_never();
    auto answer = std::make_shared<Answer>();
    handler(std::move(request), [answer](Response r) { answer->deliver(std::move(r)); });
    Response response;
    if (std::optional<Response> now = answer->take()) {
      response = std::move(*now);
    } else {
      response = co_await answer->wait(use_awaitable);
    }
    BeastResponse res = to_beast(response, version, keep_alive);
    stream.expires_after(opt.read_timeout);
    co_await bhttp::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
    if (ec || !keep_alive)
      break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  connections.fetch_sub(1);
}

Result<std::unique_ptr<Server>> Server::listen(const ServerOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  if (Status s = net::listen_on(*impl->acceptor, options.listen, "HTTP"); !s.ok())
    return s;
  beast::error_code ec;
  impl->port = impl->acceptor->local_endpoint(ec).port();
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

void Server::serve(Handler handler) {
  RAFTNGINX_CHECK(impl_->threads.empty(), "Server::serve called twice");
  impl_->handler = std::move(handler);
  asio::co_spawn(*impl_->contexts.front(), impl_->accept_loop(), asio::detached);
  for (size_t i = 0; i < impl_->contexts.size(); ++i) {
    impl_->threads.emplace_back([io = impl_->contexts[i].get(), i] {
      this_server_thread = i;
      auto guard = asio::make_work_guard(*io);
      io->run();
    });
  }
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  stop();
}

uint16_t Server::port() const {
  return impl_->port;
}

void Server::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(*impl_->contexts.front(), delay);
  timer->async_wait([timer, fn = std::move(fn)](const beast::error_code& ec) {
    if (!ec)
      fn();
  });
}

size_t Server::current_thread() {
  return this_server_thread;
}

void Server::post(size_t thread, std::function<void()> fn) {
  asio::post(*impl_->contexts[thread % impl_->contexts.size()], std::move(fn));
}

void Server::stop() {
  if (impl_->threads.empty())
    return;
  asio::post(*impl_->contexts.front(), [impl = impl_.get()] {
    beast::error_code ec;
    impl->acceptor->close(ec);
  });
  for (auto& context : impl_->contexts)
    context->stop();
  for (std::thread& t : impl_->threads)
    t.join();
  impl_->threads.clear();
}

}  // namespace raftnginx::http
