// How the process's open-file limit (RLIMIT_NOFILE) is shared among what opens files, so that
// clients holding HTTP connections can never take the descriptors RocksDB, the raft port or the
// log need: a node that cannot open a file stops taking writes.
//
// Called once at start-up, before any thread.
#pragma once

#include <cstddef>

#include "raftnginx/status.h"

namespace raftnginx::cli {

struct FileBudget {
  size_t limit = 0;             // RLIMIT_NOFILE, after raising the soft limit to the hard one
  size_t http_connections = 0;  // at most what was asked for
  size_t raft_connections = 0;  // inbound connections on the raft port
  size_t backend_files = 0;     // the backend's (RocksDB's max_open_files)
};

// Raises the soft limit to the hard one, then shares it out: a fixed reserve (log segments,
// snapshots, nginx, outbound peers), the backend and the raft port an eighth each up to their
// defaults, HTTP the rest up to `http_wanted`. InvalidArgument if too few remain for HTTP.
Result<FileBudget> share_open_files(size_t http_wanted);

}  // namespace raftnginx::cli
