#include "raft/types.h"

#include <cstring>

#include "util/coding.h"

namespace raftnginx::raft {

namespace {

// Version byte of the ConfChange encoding, so that a later release can extend it.
constexpr uint8_t kConfChangeFormat = 1;

}  // namespace

// Layout: format(1) type(1) node(8, little endian) context(rest).
std::string encode_conf_change(const ConfChange& cc) {
  std::string out;
  out.reserve(10 + cc.context.size());
  out.push_back(static_cast<char>(kConfChangeFormat));
  out.push_back(static_cast<char>(cc.type));
  put_u64(&out, cc.node);
  out += cc.context;
  return out;
}

Result<ConfChange> decode_conf_change(std::string_view data) {
  if (data.size() < 10)
    return Status::corruption("conf change: too short");
  if (static_cast<uint8_t>(data[0]) != kConfChangeFormat) {
    return Status::not_supported("conf change: unknown format " +
                                 std::to_string(static_cast<uint8_t>(data[0])));
  }
  const auto type = static_cast<uint8_t>(data[1]);
  if (type > static_cast<uint8_t>(ConfChangeType::kUpdateNode)) {
    return Status::corruption("conf change: unknown type " + std::to_string(type));
  }
  ConfChange cc;
  cc.type = static_cast<ConfChangeType>(type);
  cc.node = decode_u64(data.data() + 2);
  cc.context = std::string(data.substr(10));
  if (cc.node == kNoNode)
    return Status::corruption("conf change: node id 0");
  return cc;
}

Result<ConfState> apply_conf_change(const ConfState& conf, const ConfChange& cc) {
  if (cc.node == kNoNode)
    return Status::invalid_argument("node id 0 is reserved");
  ConfState next = conf;
  const std::string who = "node " + std::to_string(cc.node);
  switch (cc.type) {
    case ConfChangeType::kAddVoter:
      if (conf.voters.count(cc.node))
        return Status::invalid_argument(who + " is already a voter");
      next.learners.erase(cc.node);
      next.voters.insert(cc.node);
      break;
    case ConfChangeType::kAddLearner:
      if (conf.voters.count(cc.node)) {
        return Status::invalid_argument(who + " is a voter; remove it to make it a learner");
      }
      if (conf.learners.count(cc.node)) {
        return Status::invalid_argument(who + " is already a learner");
      }
      next.learners.insert(cc.node);
      break;
    case ConfChangeType::kRemoveNode:
      if (!conf.contains(cc.node))
        return Status::invalid_argument(who + " is not a member");
      next.voters.erase(cc.node);
      next.learners.erase(cc.node);
      if (next.voters.empty())
        return Status::invalid_argument("cannot remove the last voter");
      break;
    case ConfChangeType::kUpdateNode:
      if (!conf.contains(cc.node))
        return Status::invalid_argument(who + " is not a member");
      break;
  }
  return next;
}

const char* message_type_name(MessageType type) {
  switch (type) {
    case MessageType::kAppend:
      return "Append";
    case MessageType::kAppendResponse:
      return "AppendResponse";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResponse:
      return "HeartbeatResponse";
    case MessageType::kPreVote:
      return "PreVote";
    case MessageType::kPreVoteResponse:
      return "PreVoteResponse";
    case MessageType::kVote:
      return "Vote";
    case MessageType::kVoteResponse:
      return "VoteResponse";
    case MessageType::kSnapshot:
      return "Snapshot";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
    case MessageType::kReadIndex:
      return "ReadIndex";
    case MessageType::kReadIndexResponse:
      return "ReadIndexResponse";
    case MessageType::kTransferLeader:
      return "TransferLeader";
  }
  return "Unknown";
}

const char* conf_change_type_name(ConfChangeType type) {
  switch (type) {
    case ConfChangeType::kAddVoter:
      return "add-voter";
    case ConfChangeType::kAddLearner:
      return "add-learner";
    case ConfChangeType::kRemoveNode:
      return "remove";
    case ConfChangeType::kUpdateNode:
      return "update";
  }
  return "unknown";
}

const char* violation_name(Violation v) {
  switch (v) {
    case Violation::kNone:
      return "none";
    case Violation::kFromSelf:
      return "from_self";
    case Violation::kTermTooLarge:
      return "term_too_large";
    case Violation::kSecondLeader:
      return "second_leader";
    case Violation::kNotFromLeader:
      return "not_from_leader";
    case Violation::kMalformedAppend:
      return "malformed_append";
    case Violation::kOverwritesCommitted:
      return "overwrites_committed";
    case Violation::kCommitPastLog:
      return "commit_past_log";
    case Violation::kAckPastLog:
      return "ack_past_log";
    case Violation::kMalformedSnapshot:
      return "malformed_snapshot";
  }
  return "unknown";
}

const char* role_name(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "unknown";
}

}  // namespace raftnginx::raft
