#include "cli/status_log.h"

#include <spdlog/spdlog.h>

namespace raftnginx::cli {

void StatusLog::operator()(const node::NodeStatus& st) {
  const uint64_t term = st.raft.hard_state.term;
  const node::NodeStatus* last = last_ ? &*last_ : nullptr;
  if (!last || st.raft.role != last->raft.role || st.raft.learner != last->raft.learner)
    spdlog::info("role {} term={}", node::role_label(st.raft), term);
  if (last && st.raft.leader != last->raft.leader) {
    if (st.raft.leader == raft::kNoNode) {
      spdlog::warn("leader lost term={}", term);
    } else {
      spdlog::info("leader {} term={}", st.membership.name_of(st.raft.leader), term);
    }
  }
  if (!last || st.membership.conf != last->membership.conf) {
    std::string members;
    for (raft::NodeId id : st.membership.conf.voters)
      members += (members.empty() ? "" : ",") + st.membership.name_of(id);
    for (raft::NodeId id : st.membership.conf.learners)
      members += (members.empty() ? "" : ",") + st.membership.name_of(id) + "(learner)";
    spdlog::info("members [{}] term={}", members, term);
  }
  if (last && st.snapshots_taken != last->snapshots_taken)
    spdlog::info("snapshot taken at index {} term={}", st.snapshot_index, term);
  if (last && st.snapshots_installed != last->snapshots_installed)
    spdlog::info("snapshot installed at index {} term={}", st.snapshot_index, term);
  if (!st.failure.ok() && (!last || last->failure.ok()))
    spdlog::error("node stopped taking writes: {}", st.failure.to_string());
  last_ = st;
}

}  // namespace raftnginx::cli
