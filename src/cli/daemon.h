// The raft-nginx daemon: wires one node to its storage, state machine, TCP transport and HTTP
// API, forms or joins the cluster, and runs until SIGTERM or SIGINT, when it hands leadership
// over and stops cleanly.
#pragma once

#include "cli/options.h"

namespace raftnginx::cli {

// Runs the daemon to completion; returns the process exit code.
int run_daemon(const DaemonOptions& options);

}  // namespace raftnginx::cli
