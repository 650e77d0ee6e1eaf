#include "node/inbound.h"

namespace raftnginx::node {

const char* refuse_inbound(const raft::Message& m, transport::Sender sender,
                           const raft::ConfState& members, const std::set<raft::NodeId>& removed,
                           bool from_snapshot_stream) {
  if (m.from != sender.id)
    return "wrong_sender";
  if (removed.count(m.from))
    return "from_removed_member";
  if (m.type == raft::MessageType::kSnapshot && !from_snapshot_stream)
    return "unoffered_snapshot";
  const bool knows_members = !members.voters.empty() || !members.learners.empty();
  if (!knows_members || members.contains(m.from))
    return nullptr;
  const bool leader_traffic = m.type == raft::MessageType::kAppend ||
                              m.type == raft::MessageType::kHeartbeat ||
                              m.type == raft::MessageType::kSnapshot;
  return leader_traffic && sender.authenticated ? nullptr : "from_non_member";
}

}  // namespace raftnginx::node
