#include "raft/config.h"

namespace raftnginx::raft {

Status Config::validate() const {
  if (id == kNoNode)
    return Status::invalid_argument("node id must not be 0");
  if (heartbeat_tick <= 0)
    return Status::invalid_argument("heartbeat_tick must be positive");
  if (election_tick <= heartbeat_tick) {
    return Status::invalid_argument("election_tick must be greater than heartbeat_tick");
  }
  if (max_inflight_msgs == 0)
    return Status::invalid_argument("max_inflight_msgs must be positive");
  if (max_msg_entries == 0)
    return Status::invalid_argument("max_msg_entries must be positive");
  return Status();
}

}  // namespace raftnginx::raft
