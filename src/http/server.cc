#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#include "http/server.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "http/beast_glue.h"
#include "net/listen.h"
#include "net/tls.h"

namespace raftnginx::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;
using namespace std::chrono_literals;

namespace {

using BeastResponse = bhttp::response<bhttp::string_body>;

thread_local size_t this_server_thread = 0;  // see Server::current_thread()
thread_local bool is_server_thread = false;

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

// A request as the handler sees it, but for its body.
Request request_head(const bhttp::request<bhttp::string_body>& message, const std::string& remote,
                     const std::string& certificate_name) {
  Request request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  request.headers = headers_from_beast(message.base());
  request.remote = remote;
  request.certificate_name = certificate_name;
  return request;
}

// Where a handler's Response (or a stream's next piece) meets the connection's coroutine. One
// given at once (a stale read) is taken without suspending; one given later, from any thread (a
// write, once committed), resumes the coroutine on its own executor.
template <typename T>
class Handoff {
 public:
  void deliver(T value) {
    std::unique_lock lock(mu_);
    RAFTNGINX_CHECK(!delivered_, "a request was answered twice");
    delivered_ = true;
    if (!resume_) {
      value_ = std::move(value);
      return;
    }
    auto resume = std::move(resume_);
    lock.unlock();
    resume(std::move(value));
  }

  // The value, if it was given before the coroutine asked.
  std::optional<T> take() {
    std::lock_guard lock(mu_);
    return std::exchange(value_, std::nullopt);
  }

  template <typename Token>
  auto wait(Token&& token) {
    return asio::async_initiate<Token, void(T)>(
        [this](auto completion) {
          auto executor = asio::get_associated_executor(completion);
          auto shared = std::make_shared<decltype(completion)>(std::move(completion));
          auto resume = [executor, shared](T value) {
            // Inline when the answer comes from the connection's own thread (Server::post to
            // the thread that took the request); a post from any other thread.
            asio::dispatch(executor, [shared, value = std::move(value)]() mutable {
              (*shared)(std::move(value));
            });
          };
          std::unique_lock lock(mu_);
          if (!value_) {
            resume_ = std::move(resume);
            return;
          }
          T value = std::move(*value_);
          value_.reset();
          lock.unlock();
          resume(std::move(value));
        },
        token);
  }

 private:
  std::mutex mu_;
  bool delivered_ = false;
  std::optional<T> value_;
  std::function<void(T)> resume_;
};

using Answer = Handoff<Response>;

// One open connection, as the connection limit sees it.
struct Conn {
  Conn(asio::any_io_executor ex, std::string who)
      : executor(std::move(ex)), client(std::move(who)) {}
  asio::any_io_executor executor;
  std::string client;  // the remote IP address, or "unix"
  // Not serving a request: in its TLS handshake, waiting for a request, or still reading one.
  // Such a connection is what a client who holds many may lose to one who holds few.
  std::atomic<bool> waiting{true};
  // The connection's own thread only.
  bool alive = true;
  std::function<void()> close;
};

// Open connections by client, so that the limit is fair among them. Thread-safe.
class ConnectionTable {
 public:
  explicit ConnectionTable(size_t max) : max_(max) {}

  // Whether `c` may open now; under the limit it may, and at the limit it may if another client
  // holds more connections than `c`'s client will and one of them is waiting: that one is
  // closed.
  bool admit(const std::shared_ptr<Conn>& c) {
    std::shared_ptr<Conn> victim;
    {
      std::lock_guard lock(mu_);
      const size_t mine = by_client_.count(c->client) ? by_client_[c->client].size() : 0;
      if (total_ >= max_) {
        const std::list<std::shared_ptr<Conn>>* heaviest = nullptr;
        for (const auto& [client, conns] : by_client_) {
          if (client != c->client && conns.size() > mine + 1 &&
              (!heaviest || conns.size() > heaviest->size()))
            heaviest = &conns;
        }
        for (const auto& conn : heaviest ? *heaviest : std::list<std::shared_ptr<Conn>>()) {
          if (conn->waiting) {
            victim = conn;
            break;
          }
        }
        if (!victim)
          return false;
        remove_locked(victim.get());
      }
      by_client_[c->client].push_back(c);
      ++total_;
    }
    if (victim) {
      asio::post(victim->executor, [victim] {
        if (victim->alive && victim->close)
          victim->close();
      });
    }
    return true;
  }

  void remove(const Conn* c) {
    std::lock_guard lock(mu_);
    remove_locked(c);
  }

  size_t size() const {
    std::lock_guard lock(mu_);
    return total_;
  }

 private:
  void remove_locked(const Conn* c) {
    auto it = by_client_.find(c->client);
    if (it == by_client_.end())
      return;
    auto& conns = it->second;
    for (auto conn = conns.begin(); conn != conns.end(); ++conn) {
      if (conn->get() == c) {
        conns.erase(conn);
        --total_;
        break;
      }
    }
    if (conns.empty())
      by_client_.erase(it);
  }

  mutable std::mutex mu_;
  const size_t max_;
  size_t total_ = 0;
  std::map<std::string, std::list<std::shared_ptr<Conn>>> by_client_;
};

}  // namespace

class Server::Impl {
 public:
  explicit Impl(ServerOptions options) : opt(std::move(options)), table(opt.max_connections) {
    // One io_context per thread, each connection on one of them: no strands, and a context's
    // scheduler rarely meets another thread on its lock.
    for (int i = 0; i < std::max(1, opt.threads); ++i)
      contexts.push_back(std::make_unique<asio::io_context>(1));
    acceptor = std::make_unique<tcp::acceptor>(*contexts.front());
    unix_acceptor = std::make_unique<local::acceptor>(*contexts.front());
  }

  Status listen_unix();
  template <typename Acceptor>
  asio::awaitable<void> accept_loop(Acceptor& acceptor, bool tcp_port);
  asio::awaitable<void> serve_tcp(tcp::socket socket, std::shared_ptr<Conn> conn);
  asio::awaitable<void> serve_unix(local::socket socket, std::shared_ptr<Conn> conn);
  template <typename Stream>
  asio::awaitable<void> serve(Stream& stream, std::string remote, std::string certificate_name,
                              Conn& conn);
  // Sends a response whose body is a BodyStream; true if it was sent to its end.
  template <typename Stream>
  asio::awaitable<bool> send_stream(Stream& stream, const Response& response, unsigned version,
                                    bool keep_alive);

  const ServerOptions opt;
  Handler handler;
  Screen screen;
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<local::acceptor> unix_acceptor;
  ConnectionTable table;
  uint16_t port = 0;
  std::vector<std::thread> threads;
};

Status Server::Impl::listen_unix() {
  ::unlink(opt.unix_socket.c_str());  // a socket file left behind by a killed daemon
  boost::system::error_code ec;
  unix_acceptor->open(local(), ec);
  if (!ec)
    unix_acceptor->bind(local::endpoint(opt.unix_socket), ec);
  if (!ec)
    unix_acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status::io_error("cannot listen on " + opt.unix_socket + ": " + ec.message());
  // nginx's workers may run as another user; the API's own checks still apply on this socket.
  ::chmod(opt.unix_socket.c_str(), 0666);
  return Status();
}

template <typename Acceptor>
asio::awaitable<void> Server::Impl::accept_loop(Acceptor& listener, bool tcp_port) {
  auto last_warning = std::chrono::steady_clock::time_point();
  for (size_t accepted = 0;; ++accepted) {
    beast::error_code ec;
    asio::io_context& context = *contexts[accepted % contexts.size()];
    auto socket = co_await listener.async_accept(context, asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !listener.is_open())
      co_return;
    if (ec) {
      // Out of file descriptors, for one: wait a little instead of spinning on the error.
      const auto now = std::chrono::steady_clock::now();
      if (now - last_warning > 10s) {
        spdlog::warn("http: accept failed: {}; backing off", ec.message());
        last_warning = now;
      }
      asio::steady_timer pause(listener.get_executor(), 100ms);
      co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    std::string client = "unix";
    if constexpr (std::is_same_v<Acceptor, tcp::acceptor>) {
      const auto endpoint = socket.remote_endpoint(ec);
      client = ec ? "?" : endpoint.address().to_string();
    }
    auto conn = std::make_shared<Conn>(socket.get_executor(), std::move(client));
    if (!table.admit(conn)) {
      // A plaintext client is told why; a TLS one just loses the connection.
      if (tcp_port && opt.tls) {
        socket.close(ec);
        continue;
      }
      asio::co_spawn(
          socket.get_executor(),
          [](auto s, std::chrono::milliseconds timeout) -> asio::awaitable<void> {
            beast::basic_stream<typename decltype(s)::protocol_type> stream(std::move(s));
            stream.expires_after(timeout);
            BeastResponse res =
                to_beast(Response::unavailable("too many connections; retry later"), 11, false);
            beast::error_code e;
            co_await bhttp::async_write(stream, res, asio::redirect_error(use_awaitable, e));
            stream.socket().shutdown(asio::socket_base::shutdown_both, e);
          }(std::move(socket), opt.read_timeout),
          asio::detached);
      continue;
    }
    if constexpr (std::is_same_v<Acceptor, tcp::acceptor>) {
      asio::co_spawn(conn->executor, serve_tcp(std::move(socket), conn), asio::detached);
    } else {
      asio::co_spawn(conn->executor, serve_unix(std::move(socket), conn), asio::detached);
    }
  }
}

asio::awaitable<void> Server::Impl::serve_tcp(tcp::socket socket, std::shared_ptr<Conn> conn) {
  beast::error_code ec;
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  const std::string remote =
      ec ? std::string("?") : peer.address().to_string() + ":" + std::to_string(peer.port());
  if (!opt.tls) {
    beast::tcp_stream stream(std::move(socket));
    co_await serve(stream, remote, std::string(), *conn);
  } else {
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)),
                                                *opt.tls->current());
    conn->close = [&stream] { beast::get_lowest_layer(stream).close(); };
    beast::get_lowest_layer(stream).expires_after(opt.read_timeout);
    co_await stream.async_handshake(asio::ssl::stream_base::server,
                                    asio::redirect_error(use_awaitable, ec));
    if (!ec) {
      std::string certificate_name = net::peer_identity(stream.native_handle()).common_name;
      co_await serve(stream, remote, std::move(certificate_name), *conn);
    }
  }
  conn->alive = false;
  table.remove(conn.get());
}

asio::awaitable<void> Server::Impl::serve_unix(local::socket socket, std::shared_ptr<Conn> conn) {
  beast::basic_stream<local> stream(std::move(socket));
  co_await serve(stream, "unix", std::string(), *conn);
  conn->alive = false;
  table.remove(conn.get());
}

template <typename Stream>
asio::awaitable<void> Server::Impl::serve(Stream& stream, std::string remote,
                                          std::string certificate_name, Conn& conn) {
  auto& lowest = beast::get_lowest_layer(stream);
  conn.close = [&lowest] { lowest.close(); };
  beast::error_code ec;
  beast::flat_buffer buffer;
  for (;;) {
    // An idle kept-alive connection may wait long for its next request; once a request has
    // begun, all of it must arrive within read_timeout.
    conn.waiting = true;
    if (buffer.size() == 0) {
      lowest.expires_after(opt.idle_timeout);
      const size_t n = co_await stream.async_read_some(buffer.prepare(64 * 1024),
                                                       asio::redirect_error(use_awaitable, ec));
      if (ec)
        break;
      buffer.commit(n);
    }
    lowest.expires_after(opt.read_timeout);
    bhttp::request_parser<bhttp::string_body> parser;
    parser.body_limit(opt.max_body);
    co_await bhttp::async_read_header(stream, buffer, parser,
                                      asio::redirect_error(use_awaitable, ec));
    if (!ec && screen && !parser.is_done()) {
      Request head = request_head(parser.get(), remote, certificate_name);
      if (std::optional<Response> refused = screen(head)) {
        BeastResponse res = to_beast(*refused, parser.get().version(), false);
        co_await bhttp::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
        // Then the body is read and dropped (within read_timeout), never held: closing on unread
        // bytes would reset the connection before the client (or nginx) read the answer.
        bhttp::request_parser<bhttp::buffer_body> drop(std::move(parser));
        std::string sink(16 * 1024, '\0');  // on the heap: the coroutine's frame stays small
        while (!ec && !drop.is_done()) {
          drop.get().body().data = sink.data();
          drop.get().body().size = sink.size();
          co_await bhttp::async_read(stream, buffer, drop, asio::redirect_error(use_awaitable, ec));
          if (ec == bhttp::error::need_buffer)
            ec = {};
        }
        break;
      }
    }
    if (!ec && !parser.is_done())
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
    conn.waiting = false;
    auto& message = parser.get();
    const unsigned version = message.version();
    const bool keep_alive = message.keep_alive();
    Request request = request_head(message, remote, certificate_name);
    request.body = std::move(message.body());
    lowest.expires_never();
    auto answer = std::make_shared<Answer>();
    handler(std::move(request), [answer](Response r) { answer->deliver(std::move(r)); });
    Response response;
    if (std::optional<Response> now = answer->take()) {
      response = std::move(*now);
    } else {
      response = co_await answer->wait(use_awaitable);
    }
    if (response.stream) {
      const bool ended = co_await send_stream(stream, response, version, keep_alive);
      if (!ended || !keep_alive)
        break;
      continue;
    }
    BeastResponse res = to_beast(response, version, keep_alive);
    lowest.expires_after(opt.read_timeout);
    co_await bhttp::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
    if (ec || !keep_alive)
      break;
  }
  lowest.close();
}

template <typename Stream>
asio::awaitable<bool> Server::Impl::send_stream(Stream& stream, const Response& response,
                                                unsigned version, bool keep_alive) {
  auto& lowest = beast::get_lowest_layer(stream);
  const std::shared_ptr<BodyStream> body = response.stream;
  bhttp::response<bhttp::empty_body> head{static_cast<bhttp::status>(response.status), version};
  head.set(bhttp::field::server, "raft-nginx");
  headers_to_beast(response.headers, &head);
  head.keep_alive(keep_alive);
  head.chunked(true);
  bhttp::response_serializer<bhttp::empty_body> serializer{head};
  beast::error_code ec;
  lowest.expires_after(opt.read_timeout);
  co_await bhttp::async_write_header(stream, serializer, asio::redirect_error(use_awaitable, ec));
  while (!ec) {
    // A stream may be quiet for long (a watch between changes): each write has its own limit.
    lowest.expires_never();
    auto handoff = std::make_shared<Handoff<std::string>>();
    body->next([handoff](std::string piece) { handoff->deliver(std::move(piece)); });
    std::string piece;
    if (std::optional<std::string> now = handoff->take()) {
      piece = std::move(*now);
    } else {
      piece = co_await handoff->wait(use_awaitable);
    }
    lowest.expires_after(opt.read_timeout);
    if (piece.empty()) {
      const auto last = bhttp::make_chunk_last();
      co_await asio::async_write(stream, last, asio::redirect_error(use_awaitable, ec));
      if (!ec)
        co_return true;
      break;
    }
    const auto chunk = bhttp::make_chunk(asio::buffer(piece));
    co_await asio::async_write(stream, chunk, asio::redirect_error(use_awaitable, ec));
  }
  body->cancel();
  co_return false;
}

Result<std::unique_ptr<Server>> Server::listen(const ServerOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  if (Status s = net::listen_on(*impl->acceptor, options.listen, "HTTP"); !s.ok())
    return s;
  if (!options.unix_socket.empty()) {
    if (Status s = impl->listen_unix(); !s.ok())
      return s;
  }
  beast::error_code ec;
  impl->port = impl->acceptor->local_endpoint(ec).port();
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

void Server::serve(Handler handler, Screen screen) {
  RAFTNGINX_CHECK(impl_->threads.empty(), "Server::serve called twice");
  impl_->handler = std::move(handler);
  impl_->screen = std::move(screen);
  asio::co_spawn(*impl_->contexts.front(), impl_->accept_loop(*impl_->acceptor, true),
                 asio::detached);
  if (impl_->unix_acceptor->is_open()) {
    asio::co_spawn(*impl_->contexts.front(), impl_->accept_loop(*impl_->unix_acceptor, false),
                   asio::detached);
  }
  for (size_t i = 0; i < impl_->contexts.size(); ++i) {
    impl_->threads.emplace_back([io = impl_->contexts[i].get(), i] {
      this_server_thread = i;
      is_server_thread = true;
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

size_t Server::connections() const {
  return impl_->table.size();
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

bool Server::on_server_thread() {
  return is_server_thread;
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
    impl->unix_acceptor->close(ec);
  });
  for (auto& context : impl_->contexts)
    context->stop();
  for (std::thread& t : impl_->threads)
    t.join();
  impl_->threads.clear();
  if (!impl_->opt.unix_socket.empty())
    ::unlink(impl_->opt.unix_socket.c_str());
}

}  // namespace raftnginx::http
