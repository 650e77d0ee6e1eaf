// Which messages from the network may reach the consensus core: the node's rules on top of what
// the transport established (transport::Sender). The simulator applies the same rules.
//
//   * A message must come from the peer its connection is bound to.
//   * A snapshot is offered only through a snapshot stream, never in a bare message (the core
//     would be told to install data that is not there).
//   * Nothing from an id removed from the cluster (and not added back) is listened to.
//   * While this node knows its membership, a message from a non-member is dropped, except leader
//     traffic proven by a node certificate of the cluster (TLS): a node that lags behind the
//     change that added the current leader cannot know it is a member yet. A node that knows no
//     membership (it waits to join) takes messages from any peer of the cluster.
#pragma once

#include <set>

#include "raft/types.h"
#include "transport/transport.h"

namespace raftnginx::node {

// The name of the rule `m` breaks (a raftnginx_protocol_violations_total kind), or nullptr.
const char* refuse_inbound(const raft::Message& m, transport::Sender sender,
                           const raft::ConfState& members, const std::set<raft::NodeId>& removed,
                           bool from_snapshot_stream);

}  // namespace raftnginx::node
