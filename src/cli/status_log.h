// StatusLog: one log line for each change an operator wants to see: role, leader, term,
// membership, snapshots, a failure. A Node::observe observer (runs on the raft loop).
#pragma once

#include <optional>

#include "node/node.h"

namespace raftnginx::cli {

class StatusLog {
 public:
  void operator()(const node::NodeStatus& st);

 private:
  std::optional<node::NodeStatus> last_;
};

}  // namespace raftnginx::cli
