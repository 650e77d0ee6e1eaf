#include "net/address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cctype>
#include <charconv>

namespace raftnginx::net {
bool valid_dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253)
    return false;
  size_t label = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '.') {
      if (label == 0 || name[i - 1] == '-')
        return false;
      label = 0;
      continue;
    }
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && !(c == '-' && label > 0))
      return false;
    if (++label > 63)
      return false;
  }
  return label > 0 && name.back() != '-';
}

namespace {

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool valid_ip(std::string_view host, int family) {
  if (host.size() >= INET6_ADDRSTRLEN)
    return false;
  char buffer[INET6_ADDRSTRLEN] = {};
  host.copy(buffer, host.size());
  unsigned char out[sizeof(struct in6_addr)];
  return inet_pton(family, buffer, out) == 1;
}

Status invalid(std::string_view text, const std::string& why) {
  std::string shown(text.substr(0, 64));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '"')
      c = '?';
  }
  return Status::invalid_argument("address \"" + shown + (text.size() > 64 ? "...\"" : "\"") + " " +
                                  why);
}

}  // namespace

std::string HostPort::to_string() const {
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<HostPort> parse_address(std::string_view text, Port port_rule) {
  if (text.size() > kMaxAddressLength)
    return invalid(text, "is longer than " + std::to_string(kMaxAddressLength) + " characters");
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size())
    return invalid(text, "is not host:port");
  HostPort out;
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']')
      return invalid(text, "has an unclosed '['");
    host = host.substr(1, host.size() - 2);
    if (!valid_ip(host, AF_INET6))
      return invalid(text, "does not hold an IPv6 address in brackets");
    out.ipv6 = true;
  } else if (host.find(':') != std::string_view::npos) {
    return invalid(text, "holds an IPv6 address without brackets ([::1]:port)");
  } else if (!valid_dns_name(host) && !valid_ip(host, AF_INET)) {
    return invalid(text, "does not start with a host name or an IP address");
  } else if (lowercase(host) == "unix") {
    // nginx reads "server unix:..." as a Unix socket path, not as a host named unix.
    return invalid(text, "names the host \"unix\", which nginx would take for a socket path");
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value > 65535 ||
      (value == 0 && port_rule == Port::kRequired) || port.size() > 5)
    return invalid(text, "does not end with a port from 1 to 65535");
  out.host = std::string(host);
  out.port = static_cast<uint16_t>(value);
  return out;
}

bool resolves_to_loopback_only(const std::string& host) {
  if (host == "::1" || (valid_ip(host, AF_INET) && host.starts_with("127.")))
    return true;
  if (valid_ip(host, AF_INET) || valid_ip(host, AF_INET6))
    return false;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0)
    return false;
  bool loopback = found != nullptr;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      const auto* v4 = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      loopback = loopback && (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    } else if (a->ai_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
      loopback = loopback && IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
    } else {
      loopback = false;
    }
  }
  ::freeaddrinfo(found);
  return loopback;
}

std::string local_address(const std::string& bind) {
  auto parsed = parse_address(bind, Port::kZeroAllowed);
  if (!parsed.ok())
    return bind;
  if (parsed->host == "0.0.0.0")
    return "127.0.0.1:" + std::to_string(parsed->port);
  if (parsed->host == "::")
    return "[::1]:" + std::to_string(parsed->port);
  return bind;
}

}  // namespace raftnginx::net
