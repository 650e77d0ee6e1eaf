// Majority arithmetic over the voters of one configuration.
#pragma once

#include <map>
#include <set>
#include <vector>

#include "raft/types.h"

namespace raftnginx::raft {

// The largest value that a majority of voters has reached, given each voter's value (a voter
// missing from `acked` counts as 0). Over matchIndex this is the quorum-replicated index.
// Returns 0 for an empty voter set.
uint64_t majority_value(const std::set<NodeId>& voters, const std::vector<uint64_t>& acked);

enum class VoteResult : uint8_t { kPending, kWon, kLost };

// Whether `votes` (granted or refused, by voter) decide an election among `voters`.
VoteResult majority_vote(const std::set<NodeId>& voters, const std::map<NodeId, bool>& votes);

}  // namespace raftnginx::raft
