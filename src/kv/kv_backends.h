// The built-in key-value store (hraftd's HTTP API, with revisions, listing, compare-and-set,
// TTL and watches: kv/kv_routes.h) over the memory and rocksdb backends, as a backend like any
// user's: it registers itself through the public hooks (include/raftnginx/daemon.h), and its
// routes use only the public Exchange. raft-nginx's main is run_daemon with these hooks.
#pragma once

#include "raftnginx/daemon.h"

namespace raftnginx::kv {

// Adds the "rocksdb" (the default) and "memory" backends, and the rocksdb backend's flags
// (--fsm-flush-entries, --fsm-flush-interval), to `hooks`.
void add_backends(DaemonHooks* hooks);

}  // namespace raftnginx::kv
