// `raft-nginx kv ...`, `raft-nginx cluster ...`, `backup` and `restore`: the HTTP API from a shell,
// for operators and scripts. Each run sends its requests to the first endpoint of --endpoints (or
// RAFTNGINX_ENDPOINTS) that answers, follows a follower's redirect to the leader, and moves on
// to the next endpoint when one cannot be reached or has no leader. Writes carry an
// Idempotency-Key of their own, so that such a retry applies once.
//
// Exit codes: 0 done; 1 refused (an HTTP error); 2 bad usage; 3 no such key or member (404);
// 4 a compare failed (412, or a transaction's compares); 5 no endpoint could serve it;
// 6 the outcome is unknown (504: it may still apply).
#pragma once

namespace raftnginx::cli {

// Run with argv as given after "kv" or "cluster"; return the exit code.
int run_kv_command(int argc, char** argv);
int run_cluster_command(int argc, char** argv);
// `raft-nginx backup FILE` and `raft-nginx restore FILE (DATA_DIR ... | --in-place)`.
int run_backup_command(int argc, char** argv);
int run_restore_command(int argc, char** argv);

}  // namespace raftnginx::cli
