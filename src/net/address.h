// Network addresses: the one strict grammar for every host:port the daemon binds, advertises,
// stores in the membership or renders into nginx.conf.
//
//   address := host ":" port
//   host    := DNS name | IPv4 literal | "[" IPv6 literal "]"
//   DNS name: dot-separated labels of letters, digits and '-' (not at either end), each 1-63
//             characters, 253 in all
//   port    := 1-65535 (0, "any free port", only where binding allows it)
//   The host "unix", in any case, is refused: nginx would read it as a Unix socket path.
//
// Nothing else is accepted: no spaces, quotes, semicolons, braces, control characters or
// percent signs, so that an address is safe to write into a config file or a header as it is.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "raftnginx/status.h"

namespace raftnginx::net {

struct HostPort {
  std::string host;  // without brackets
  uint16_t port = 0;
  bool ipv6 = false;

  // "host:port", with brackets around an IPv6 host.
  std::string to_string() const;
};

enum class Port { kRequired, kZeroAllowed };

// The longest address accepted: a 253-character name, ':' and five digits.
inline constexpr size_t kMaxAddressLength = 259;

// Parses and validates `text`; InvalidArgument names what is wrong.
Result<HostPort> parse_address(std::string_view text, Port port = Port::kRequired);

// True if `text` is a valid address (Port::kRequired).
inline bool valid_address(std::string_view text) {
  return parse_address(text).ok();
}

// A DNS name as the grammar above has it (a cluster's name is one: certificates carry it).
bool valid_dns_name(std::string_view name);

// Whether every address `host` stands for is a loopback one (127.0.0.0/8, ::1): an IP literal
// as it is, a name as the resolver answers now. False if it does not resolve.
bool resolves_to_loopback_only(const std::string& host);

// How to reach a service bound to `bind` from this machine: a wildcard host becomes loopback.
std::string local_address(const std::string& bind);

}  // namespace raftnginx::net
