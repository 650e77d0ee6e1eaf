#include "transport/connection.h"

#include "net/tls.h"

namespace raftnginx::transport {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::use_awaitable;

Connection::Connection(tcp::socket socket, std::shared_ptr<ssl::context> tls)
    : wake(socket.get_executor()),
      plain_(std::move(socket)),
      context_(std::move(tls)),
      deadline_(plain_.get_executor()) {
  boost::system::error_code ec;
  const auto endpoint = plain_.remote_endpoint(ec);
  remote_ = ec ? std::string("?") : endpoint.address().to_string();
  plain_.set_option(tcp::no_delay(true), ec);
  if (context_)
    tls_ = std::make_unique<ssl::stream<tcp::socket>>(std::move(plain_), *context_);
}

Connection::tcp::socket& Connection::lowest() {
  return tls_ ? tls_->next_layer() : plain_;
}

asio::awaitable<bool> Connection::handshake(bool accepting) {
  if (!tls_)
    co_return true;
  boost::system::error_code ec;
  const auto side = accepting ? ssl::stream_base::server : ssl::stream_base::client;
  co_await tls_->async_handshake(side, asio::redirect_error(use_awaitable, ec));
  if (ec)
    co_return false;
  identity_ = net::peer_identity(tls_->native_handle());
  co_return true;
}

asio::awaitable<size_t> Connection::read_some(char* data, size_t n) {
  boost::system::error_code ec;
  size_t got = 0;
  if (tls_) {
    got = co_await tls_->async_read_some(asio::buffer(data, n),
                                         asio::redirect_error(use_awaitable, ec));
  } else {
    got = co_await plain_.async_read_some(asio::buffer(data, n),
                                          asio::redirect_error(use_awaitable, ec));
  }
  co_return ec ? 0 : got;
}

asio::awaitable<bool> Connection::write(const std::string& bytes) {
  boost::system::error_code ec;
  if (tls_) {
    co_await asio::async_write(*tls_, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
  } else {
    co_await asio::async_write(plain_, asio::buffer(bytes),
                               asio::redirect_error(use_awaitable, ec));
  }
  co_return !ec;
}

void Connection::arm(std::chrono::steady_clock::duration timeout) {
  deadline_.expires_after(timeout);
  deadline_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (ec)
      return;  // disarmed or re-armed
    if (auto self = weak.lock())
      self->close();
  });
}

void Connection::disarm() {
  deadline_.cancel();
}

void Connection::close() {
  boost::system::error_code ec;
  lowest().close(ec);
  deadline_.cancel();
  wake.cancel();
}

bool Connection::is_open() const {
  return tls_ ? tls_->next_layer().is_open() : plain_.is_open();
}

}  // namespace raftnginx::transport
