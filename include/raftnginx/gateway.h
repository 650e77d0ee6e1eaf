// The gateways' own nginx configuration, kept in a backend's replicated state. Public
// (docs/api.md).
//
// A backend that keeps files for every gateway (the built-in key-value store: its keys under
// nginx/) hands them to the daemon through Backend::gateway_files; each node's daemon checks them
// with its nginx (nginx -t on a staged copy), swaps them in and reloads, and keeps its last good
// set if its nginx refuses them. Before the backend proposes a change to those files, it asks
// GatewayCheck whether nginx would take the result, so that a file nginx refuses never enters
// the log.
//
// A file's path is its kind and name: "http/NAME.conf" (included at http level), "server/
// NAME.conf" (included in the gateway's server block) or "maps/NAME.map" (data for a map block:
// `include cluster/maps/NAME.map;`), NAME being 1 to 64 of A-Z a-z 0-9 '_' '-'.
#pragma once

#include <map>
#include <string>

#include "raftnginx/status.h"
#include "raftnginx/types.h"

namespace raftnginx {

struct GatewayFiles {
  raft::Index index = 0;                     // the state they were read at
  std::map<std::string, std::string> files;  // path -> content
};

class GatewayCheck {
 public:
  virtual ~GatewayCheck() = default;
  // OK if this node's nginx takes `candidate` as the whole set of files; InvalidArgument with
  // the reason (a bad path, a file too large, or nginx's own message, naming the file).
  // Thread-safe; checks one candidate at a time and may take a second or more.
  virtual Status check(const GatewayFiles& candidate) const = 0;
};

}  // namespace raftnginx
