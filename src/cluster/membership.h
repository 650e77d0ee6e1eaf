// Membership: who is in the cluster as of some log index, and each member's record; and the
// cluster's policies over it (whom to hand leadership to).
//
// The consensus core tracks voters and learners for its quorums; the runtime keeps this richer
// view beside it, built from the same committed changes through the same apply_conf_change, for
// what the core does not know: names and addresses (transport, HTTP, nginx) and the membership
// each snapshot records. A plain value: not thread-safe, copied where it is shared.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "cluster/member.h"
#include "raft/raw_node.h"

namespace raftnginx::cluster {

// The context that marks a removed id in Membership::contexts() (no member record looks so).
inline constexpr std::string_view kRemovedContext = "removed";

struct Membership {
  raft::ConfState conf;
  // Records of the members whose context is valid (member.h); a member without one is still a
  // member, with no addresses.
  std::map<raft::NodeId, Member> members;
  // Ids removed since and not added back: their certificates stay valid, but nothing they send
  // is listened to (node/inbound.h).
  std::set<raft::NodeId> removed;

  // Applies one committed change. False if the core refuses it too (it skips it the same way).
  bool apply(const raft::ConfChange& cc);
  // The member's name, or its numeric id if it has no record.
  std::string name_of(raft::NodeId id) const;
  // The member's record, or nullptr.
  const Member* find(raft::NodeId id) const;
  // The member named `name`, or kNoNode.
  raft::NodeId id_of(std::string_view name) const;
  // Each member's raft address (members without one are left out), for the transport.
  std::map<raft::NodeId, std::string> raft_addresses() const;
  // Each member's HTTP address, for nginx.
  std::vector<std::string> http_addresses() const;

  // The form snapshots store: each member's context, and kRemovedContext for each removed id.
  std::map<raft::NodeId, std::string> contexts() const;
  static Membership from(const raft::ConfState& conf,
                         const std::map<raft::NodeId, std::string>& contexts);

  bool operator==(const Membership&) const = default;
};

// The voter a leader should hand leadership to: the recently active voter, other than itself
// and those `excluded`, whose log matches the most. kNoNode if there is none (or `status` is not
// a leader's).
raft::NodeId best_transfer_target(const raft::NodeStatus& status,
                                  const std::set<raft::NodeId>& excluded = {});

// The voter a leader should hand leadership back to, given the operators' order of preference
// (--preferred-leader): the first of `preferred` ranked above the leader itself that is recently
// active and has the leader's whole log (the caller may count a peer that holds everything
// committed as having it: the transfer catches it up before it hands over). kNoNode if the leader
// comes first among those ready, none is ready, a transfer is under way, or `status` is not a
// leader's.
raft::NodeId preferred_transfer_target(const raft::NodeStatus& status,
                                       const std::vector<raft::NodeId>& preferred);

}  // namespace raftnginx::cluster
