// Member: what the cluster records about each member, and the one grammar it must follow.
//
// The record travels in the membership change's context (opaque to the consensus core), so it
// is replicated with the membership itself and every node reads it from the log:
//
//   context := "id=" name [" raft=" address] [" http=" address]
//   name    := [A-Za-z0-9._-]{1,64}
//   address := see net/address.h
//
// A bare address (how hraftd's /join names a member) is a raft address with no name. Raft knows
// a member by a 64-bit id; every node derives it from the name with node_id_for, so that all
// map a name to the same id without coordination.
//
// Everything here is validated before it is stored, and again where it is read: a record from
// an older log that does not follow the grammar is refused by parse_member, and such a member
// then has no addresses (it is neither dialled, nor rendered into nginx.conf, nor sent back in a
// header).
#pragma once

#include <string>
#include <string_view>

#include "raft/types.h"
#include "raftnginx/status.h"

namespace raftnginx::cluster {

inline constexpr size_t kMaxNameLength = 64;

struct Member {
  std::string name;
  std::string raft_address;
  std::string http_address;

  bool operator==(const Member&) const = default;
};

// InvalidArgument unless `name` follows the grammar.
Status validate_name(std::string_view name);
// InvalidArgument unless every field follows the grammar (addresses may be empty).
Status validate_member(const Member& member);

Result<Member> parse_member(std::string_view context);
// REQUIRES: validate_member(member).ok().
std::string encode_member(const Member& member);

// FNV-1a of the name, never kNoNode.
raft::NodeId node_id_for(std::string_view name);

}  // namespace raftnginx::cluster
