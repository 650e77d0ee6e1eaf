#include "cluster/membership.h"

namespace raftnginx::cluster {

bool Membership::apply(const raft::ConfChange& cc) {
  auto next = raft::apply_conf_change(conf, cc);
  if (!next.ok())
    return false;
  conf = std::move(next).value();
  if (cc.type == raft::ConfChangeType::kRemoveNode) {
    members.erase(cc.node);
    removed.insert(cc.node);
    return true;
  }
  removed.erase(cc.node);
  if (!cc.context.empty()) {
    if (auto record = parse_member(cc.context); record.ok()) {
      members[cc.node] = std::move(record).value();
    } else {
      members.erase(cc.node);
    }
  }
  return true;
}

std::string Membership::name_of(raft::NodeId id) const {
  const Member* m = find(id);
  return m && !m->name.empty() ? m->name : std::to_string(id);
}

const Member* Membership::find(raft::NodeId id) const {
  auto it = members.find(id);
  return it == members.end() ? nullptr : &it->second;
}

raft::NodeId Membership::id_of(std::string_view name) const {
  const raft::NodeId id = node_id_for(name);
  return conf.contains(id) ? id : raft::kNoNode;
}

std::map<raft::NodeId, std::string> Membership::raft_addresses() const {
  std::map<raft::NodeId, std::string> out;
  for (const auto& [id, m] : members) {
    if (!m.raft_address.empty())
      out[id] = m.raft_address;
  }
  return out;
}

std::vector<std::string> Membership::http_addresses() const {
  std::vector<std::string> out;
  for (const auto& [id, m] : members) {
    if (!m.http_address.empty())
      out.push_back(m.http_address);
  }
  return out;
}

std::map<raft::NodeId, std::string> Membership::contexts() const {
  std::map<raft::NodeId, std::string> out;
  for (const auto& [id, m] : members)
    out[id] = encode_member(m);
  for (raft::NodeId id : removed)
    out[id] = std::string(kRemovedContext);
  return out;
}

Membership Membership::from(const raft::ConfState& conf,
                            const std::map<raft::NodeId, std::string>& contexts) {
  Membership out;
  out.conf = conf;
  for (const auto& [id, context] : contexts) {
    if (context == kRemovedContext && !conf.contains(id))
      out.removed.insert(id);
    if (context.empty() || !conf.contains(id))
      continue;
    if (auto record = parse_member(context); record.ok())
      out.members[id] = std::move(record).value();
  }
  return out;
}

raft::NodeId best_transfer_target(const raft::NodeStatus& status,
                                  const std::set<raft::NodeId>& excluded) {
  if (status.role != raft::Role::kLeader)
    return raft::kNoNode;
  raft::NodeId best = raft::kNoNode;
  raft::Index best_match = 0;
  for (const raft::PeerStatus& p : status.peers) {
    if (p.id == status.id || !p.voter || !p.recent_active || excluded.contains(p.id))
      continue;
    if (best == raft::kNoNode || p.match_index > best_match) {
      best = p.id;
      best_match = p.match_index;
    }
  }
  return best;
}

raft::NodeId preferred_transfer_target(const raft::NodeStatus& status,
                                       const std::vector<raft::NodeId>& preferred) {
  if (status.role != raft::Role::kLeader || status.lead_transferee != raft::kNoNode)
    return raft::kNoNode;
  for (const raft::NodeId id : preferred) {
    if (id == status.id)
      return raft::kNoNode;
    for (const raft::PeerStatus& p : status.peers) {
      if (p.id == id && p.voter && p.recent_active && p.match_index == status.last_index)
        return id;
    }
  }
  return raft::kNoNode;
}

}  // namespace raftnginx::cluster
