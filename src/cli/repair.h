// Repair: rebuilding a node whose data is damaged from its peers (docs/operations.md).
//
//   raft-nginx repair DATA_DIR   sets the data aside and marks the directory; the next start
//                                (with the node's usual flags, -join among them) rebuilds it
//   raft-nginx ... --repair      the same, at start
//
// The rebuild: everything in the data directory moves to DATA_DIR/damaged-<UTC time>/ (kept for
// the operator to inspect or delete), then, before the node starts, the cluster is asked to take
// this member back as a learner (/join with "repair": a voter that lost its log and its vote must
// not vote), the node starts empty and catches up (by snapshot from the leader), and once it has
// it is promoted back to voter if it was one. The marker file stays until the rebuild finished,
// so an interrupted repair starts over. Nothing acknowledged is lost while a quorum of the other
// members holds it.
#pragma once

#include <atomic>
#include <string>

#include "cli/options.h"
#include "http/client.h"
#include "node/node.h"
#include "raftnginx/status.h"

namespace raftnginx::cli {

// `raft-nginx repair DATA_DIR`.
int run_repair_command(int argc, char** argv);

// Whether this start must rebuild the node (--repair, or the marker left by a repair command or
// an unfinished rebuild).
bool repair_requested(const DaemonOptions& options);

// Moves the data directory's contents aside (but for earlier damaged-* copies), and `log_dir`
// too if it lies elsewhere, and leaves the marker. Returns where the data went ("" if there was
// nothing to move).
Result<std::string> set_aside(const std::string& data_dir, const std::string& log_dir = "");

// Asks the cluster (through options.join) to take this member back as a learner. Retries until
// it is done or `stop` is set. Returns whether it was a voter.
Result<bool> rejoin_as_learner(http::Client* client, const DaemonOptions& options,
                               const std::string& authorization, const std::atomic<bool>* stop);

// Waits until the node has caught up with its leader, promotes it back to voter if it was one,
// and removes the marker. Runs on a thread of its own until done or `stop`.
void finish_repair(node::Node* node, http::Client* client, const DaemonOptions& options,
                   const std::string& authorization, bool was_voter, const std::atomic<bool>* stop);

}  // namespace raftnginx::cli
