// The positions every part of raft-nginx speaks of: a log index, a term, a node id. Public
// (docs/api.md).
#pragma once

#include <cstdint>

namespace raftnginx::raft {

// A node's id: non-zero (zero is "nobody"), derived from its name (cluster/member.h).
using NodeId = uint64_t;
// An election term.
using Term = uint64_t;
// A position in the replicated log. The index of the entry that applied a command is the same on
// every node.
using Index = uint64_t;

}  // namespace raftnginx::raft
