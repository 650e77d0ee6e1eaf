#include "raft/quorum.h"

#include <algorithm>
#include <functional>

namespace raftnginx::raft {

uint64_t majority_value(const std::set<NodeId>& voters, const std::vector<uint64_t>& acked) {
  if (voters.empty())
    return 0;
  std::vector<uint64_t> sorted = acked;
  sorted.resize(voters.size(), 0);
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  return sorted[voters.size() / 2];
}

VoteResult majority_vote(const std::set<NodeId>& voters, const std::map<NodeId, bool>& votes) {
  size_t granted = 0;
  size_t refused = 0;
  for (NodeId id : voters) {
    auto it = votes.find(id);
    if (it == votes.end())
      continue;
    (it->second ? granted : refused)++;
  }
  const size_t majority = voters.size() / 2 + 1;
  if (granted >= majority)
    return VoteResult::kWon;
  if (voters.size() - refused < majority)
    return VoteResult::kLost;
  return VoteResult::kPending;
}

}  // namespace raftnginx::raft
