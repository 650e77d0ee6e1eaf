// How a new node gets into a cluster: by asking a member (-join), or by waiting until all the
// peers of a bootstrap_expect config are up. Both block the calling thread and give up when
// `stop` is set.
#pragma once

#include <atomic>
#include <string>

#include "cli/options.h"
#include "http/client.h"

namespace raftnginx::cli {

// Asks the cluster at options.join to add this node (or move it to its new addresses),
// presenting `authorization` (may be empty) and the id of the cluster its data belongs to
// (`cluster_id`; empty for a new node), following redirects to the leader, with backoff, until
// it answers 200. Idempotent: the leader answers 200 for a member it knows. Returns the
// cluster's id from the answer (its --cluster-name if the answer names none: an older release);
// InvalidArgument if the cluster refused the node as another cluster's, Unavailable if stopped.
Result<std::string> join_cluster(http::Client* client, const DaemonOptions& options,
                                 const std::string& cluster_id, const std::string& authorization,
                                 const std::atomic<bool>* stop);

bool wait_for_peers(http::Client* client, const DaemonOptions& options,
                    const std::atomic<bool>* stop);

}  // namespace raftnginx::cli
