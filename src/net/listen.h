// Opening a listening TCP socket, shared by the daemon's Asio servers (raft and HTTP). Include
// only from files that use Asio already.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <string>

#include "net/address.h"
#include "raftnginx/status.h"

namespace raftnginx::net {

// Resolves `address` (host:port; port 0 picks a free one), then opens, binds (with
// SO_REUSEADDR) and listens on it. `what` names the address in errors: "raft", "HTTP".
inline Status listen_on(boost::asio::ip::tcp::acceptor& acceptor, const std::string& address,
                        const std::string& what) {
  using boost::asio::ip::tcp;
  auto parsed = parse_address(address, Port::kZeroAllowed);
  if (!parsed.ok())
    return Status::invalid_argument(what + " " + parsed.status().message());
  boost::system::error_code ec;
  tcp::resolver resolver(acceptor.get_executor());
  auto endpoints = resolver.resolve(parsed->host, std::to_string(parsed->port), ec);
  if (ec || endpoints.empty()) {
    return Status::invalid_argument("cannot resolve " + what + " address '" + address +
                                    "': " + ec.message());
  }
  const tcp::endpoint endpoint = *endpoints.begin();
  acceptor.open(endpoint.protocol(), ec);
  if (!ec)
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec)
    acceptor.bind(endpoint, ec);
  if (!ec)
    acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status::io_error("cannot listen on " + address + ": " + ec.message());
  return Status();
}

}  // namespace raftnginx::net
