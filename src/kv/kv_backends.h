// The built-in key-value store, hraftd's HTTP API over the memory and rocksdb backends, as a
// backend like any user's: it registers itself through the public hooks
// (include/raftnginx/daemon.h), and its routes use only the public Exchange. raft-nginx's main is
// run_daemon with these hooks.
//
//   POST   /key          {"k": "v", ...}: sets every pair in one entry
//   GET    /key/{key}    {"key": "value"}, 404 if unset; ?level=stale|linearizable, &max_lag
//   PUT    /key/{key}    the body is the value
//   DELETE /key/{key}
#pragma once

#include "raftnginx/daemon.h"

namespace raftnginx::kv {

// Adds the "rocksdb" (the default) and "memory" backends, and the rocksdb backend's flags
// (--fsm-flush-entries, --fsm-flush-interval), to `hooks`.
void add_backends(DaemonHooks* hooks);

}  // namespace raftnginx::kv
