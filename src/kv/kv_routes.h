// The key-value store's HTTP API, over the public Exchange (README, "HTTP API"):
//
//   GET    /key/{key}        a key: {"key": "value"}; &detailed adds its revisions
//   GET    /key?prefix=P     a listing: {"k": "v", ...}; &detailed, &keys, &limit=N, &after=K
//          both:             &index=N&wait=D blocks until something changed after index N
//   PUT    /key/{key}        sets it to the body; &ttl=D, &cas=N (only if mod_index is N; 0:
//                            only if absent; else 412 with the current mod_index)
//   DELETE /key/{key}        &cas=N
//   POST   /key              sets {"k": "v", ...} atomically; &ttl=D
//   POST   /txn              compares, then the success or failure ops, atomically
//   GET    /watch?prefix=P   the changes after &from=N, as NDJSON or server-sent events
//   GET    /check?set=NAME   for nginx's auth_request: 204 if X-Raft-Lookup-Key is a key under
//                            sets/NAME/ (&absent: if it is not), else 403; from this node's copy
//
// A write that changes a key under nginx/ (the gateways' files) is proposed only once this
// node's nginx takes the files it would make (kv/gateway_files.h): 422 with nginx's message if
// not.
//
// Threads: handlers run on server threads; blocking queries answer from the hub's thread.
#pragma once

#include <memory>
#include <vector>

#include "fsm/kv_store.h"
#include "kv/gateway_files.h"
#include "kv/watch_hub.h"
#include "raftnginx/routes.h"

namespace raftnginx::kv {

// A whole number, for a query parameter or a flag `name`; InvalidArgument says why not.
Result<uint64_t> parse_count(std::string_view name, std::string_view text);

// `kv` and `hub` outlive every request. A blocking query waits at most `max_wait` (its default).
// Writes to the gateways' files go through `gateway`.
std::vector<Route> kv_routes(const fsm::KvStore* kv, std::shared_ptr<WatchHub> hub,
                             std::chrono::milliseconds max_wait,
                             std::shared_ptr<GatewayWrites> gateway);

}  // namespace raftnginx::kv
