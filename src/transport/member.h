// Member: what the cluster records about each member in its membership context. Every node reads
// it from the log, so it is replicated with the membership itself.
//
//   context:  "id=<name> raft=<host:port> http=<host:port>"   (each field optional)
//
// A bare "host:port" (how hraftd's /join names a member) is a raft address. Raft itself knows a
// member by a 64-bit id; the daemon derives it from the member's name with node_id_for, so that
// every node maps a name to the same id without coordination.
#pragma once

#include <string>
#include <string_view>

#include "raft/types.h"

namespace raftnginx::transport {

struct Member {
  std::string name;
  std::string raft_address;
  std::string http_address;

  bool operator==(const Member&) const = default;
};

Member parse_member(std::string_view context);
std::string encode_member(const Member& member);

// Splits "host:port" (or "[v6]:port"); false if it is not one.
bool split_host_port(const std::string& address, std::string* host, std::string* port);

// FNV-1a of the name, never kNoNode.
raft::NodeId node_id_for(std::string_view name);

}  // namespace raftnginx::transport
