// Connection: one TCP connection of the raft port, plaintext or TLS, as the transport's coroutines
// use it: read what arrived, write all of it, close it when a deadline passes, and say who the
// peer's certificate names. Internal to src/transport; I/O thread only.
#pragma once

#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "net/tls.h"

namespace raftnginx::transport {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using tcp = boost::asio::ip::tcp;

  // `tls` null: plaintext.
  Connection(tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> tls);

  // TLS only (plaintext: true at once): the handshake, as the accepting or the dialling end.
  // On success identity() holds what the peer's verified certificate says.
  boost::asio::awaitable<bool> handshake(bool accepting);
  // Reads what is there, up to `n` bytes; 0 once the connection is closed or broken.
  boost::asio::awaitable<size_t> read_some(char* data, size_t n);
  boost::asio::awaitable<bool> write(const std::string& bytes);

  // Closes the connection once `timeout` passes, unless disarmed or re-armed first.
  void arm(std::chrono::steady_clock::duration timeout);
  void disarm();
  void close();
  bool is_open() const;

  bool tls() const { return tls_ != nullptr; }
  const net::PeerIdentity& identity() const { return identity_; }
  // The peer's IP address ("?" if unknown), for limits and logs.
  const std::string& remote() const { return remote_; }

  // The peer an inbound connection's hello bound it to (kNoNode before the hello).
  uint64_t peer_id = 0;
  // Messages waiting to go out on this connection (its writer drains them).
  std::deque<std::string> queue;
  uint64_t queued_bytes = 0;
  boost::asio::steady_timer wake;
  bool writing = false;

 private:
  tcp::socket& lowest();

  tcp::socket plain_;
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::unique_ptr<boost::asio::ssl::stream<tcp::socket>> tls_;
  boost::asio::steady_timer deadline_;
  net::PeerIdentity identity_;
  std::string remote_;
};

}  // namespace raftnginx::transport
