// The vocabulary of the consensus core: log entries, persistent state, membership, messages.
//
// Names follow the Raft paper (term, commitIndex, matchIndex...). These are plain values: the core
// never does I/O with them; the runtime encodes them for the wire and for disk.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "raftnginx/status.h"
#include "raftnginx/types.h"

namespace raftnginx::raft {

// Node ids are non-zero; zero means "nobody" (no vote, no known leader).
inline constexpr NodeId kNoNode = 0;

// Immutable bytes whose copies share one buffer. An entry's command is copied into the unstable
// log, the Ready, a message per follower and storage: sharing keeps those copies cheap.
class SharedBytes {
 public:
  SharedBytes() = default;
  SharedBytes(std::string bytes)  // NOLINT: implicit, so that strings pass where bytes are wanted
      : bytes_(bytes.empty() ? nullptr : std::make_shared<const std::string>(std::move(bytes))) {}
  SharedBytes(const char* bytes) : SharedBytes(std::string(bytes)) {}  // NOLINT: as above

  std::string_view view() const { return bytes_ ? std::string_view(*bytes_) : std::string_view(); }
  std::string str() const { return std::string(view()); }
  size_t size() const { return bytes_ ? bytes_->size() : 0; }
  bool empty() const { return size() == 0; }
  bool operator==(const SharedBytes& other) const { return view() == other.view(); }

 private:
  std::shared_ptr<const std::string> bytes_;
};

enum class EntryType : uint8_t {
  kNormal = 0,      // a client command for the state machine (empty: the leader's no-op)
  kConfChange = 1,  // an encoded ConfChange
};

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  SharedBytes data;

  bool operator==(const Entry&) const = default;
};

// Bytes an entry counts for in message and batch size limits.
inline uint64_t entry_size(const Entry& e) {
  return e.data.size() + 24;
}

// The state that must be durable before any message that depends on it is sent (paper, Fig. 2:
// currentTerm and votedFor, plus commitIndex so that a restart does not start from zero).
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;

  bool operator==(const HardState&) const = default;
};

// Cluster membership: voters elect and count toward commit; learners only receive the log.
struct ConfState {
  std::set<NodeId> voters;
  std::set<NodeId> learners;

  bool contains(NodeId id) const { return voters.count(id) || learners.count(id); }
  bool operator==(const ConfState&) const = default;
};

// What the core knows of a snapshot: the last entry it covers and the membership at that point.
// The snapshot's data lives with the runtime, which stores and streams it. Index 0: no snapshot.
struct SnapshotMeta {
  Index index = 0;
  Term term = 0;
  ConfState conf;

  bool operator==(const SnapshotMeta&) const = default;
};

// One membership change (Raft thesis 4.1: single-server changes). Adding a voter that is already
// a learner promotes it. `context` is opaque to the core (the runtime stores addresses there).
// kUpdateNode leaves the membership as it is and replaces a member's context (its addresses):
// a node that restarts at a new address rejoins under the same id.
enum class ConfChangeType : uint8_t {
  kAddVoter = 0,
  kAddLearner = 1,
  kRemoveNode = 2,
  kUpdateNode = 3
};

struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddVoter;
  NodeId node = kNoNode;
  std::string context;

  bool operator==(const ConfChange&) const = default;
};

const char* conf_change_type_name(ConfChangeType type);

std::string encode_conf_change(const ConfChange& cc);
Result<ConfChange> decode_conf_change(std::string_view data);

// The membership that results from applying `cc` to `conf`, or why it is not allowed.
Result<ConfState> apply_conf_change(const ConfState& conf, const ConfChange& cc);

enum class MessageType : uint8_t {
  kAppend,  // AppendEntries RPC (paper Fig. 2)
  kAppendResponse,
  kHeartbeat,  // an empty AppendEntries that carries no log position
  kHeartbeatResponse,
  kPreVote,  // thesis 9.6: would you vote for me if I campaigned?
  kPreVoteResponse,
  kVote,  // RequestVote RPC
  kVoteResponse,
  kSnapshot,    // InstallSnapshot RPC; the runtime carries the data beside it
  kTimeoutNow,  // thesis 3.10: leadership transfer, campaign now
  kReadIndex,   // follower to leader: give me a safe read index (thesis 6.4)
  kReadIndexResponse,
  kTransferLeader,  // follower to leader: please hand leadership to `index` (a node id)
};

const char* message_type_name(MessageType type);

// One message between two cores. Fields not used by a type are left at their defaults.
struct Message {
  MessageType type = MessageType::kAppend;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term = 0;
  // kAppend: prevLogIndex/prevLogTerm. kVote/kPreVote: lastLogIndex/lastLogTerm.
  // kAppendResponse: the new matchIndex, or the rejected prevLogIndex when `reject`, with
  // `log_term` the term of the follower's entry at `reject_hint` (fast back-off).
  // kTransferLeader: the target's node id in `index`.
  Index index = 0;
  Term log_term = 0;
  std::vector<Entry> entries;
  Index commit = 0;
  bool reject = false;
  Index reject_hint = 0;
  // Votes cast for a leadership transfer ignore the leader lease (thesis 4.2.3).
  bool transfer = false;
  // Heartbeat round number that confirms pending ReadIndex requests; echoed in the response.
  uint64_t read_seq = 0;
  // kReadIndex/kReadIndexResponse: the requester's opaque context.
  std::string context;
  // kSnapshot: what the accompanying snapshot data covers.
  SnapshotMeta snapshot;
};

// What a peer did that the protocol does not allow. The core drops such a message and says what
// it was; the runtime counts and logs it. Nothing a peer sends may abort the process: aborts are
// for this node's own broken invariants.
enum class Violation : uint8_t {
  kNone,
  kFromSelf,             // a message that claims to come from this node
  kTermTooLarge,         // a term no real cluster reaches (it would soon overflow)
  kSecondLeader,         // leader traffic in our term from someone other than our leader
  kNotFromLeader,        // TimeoutNow from someone other than our leader
  kMalformedAppend,      // entries not contiguous after prev, or of a later term than the message
  kOverwritesCommitted,  // an append that conflicts with entries we know are committed
  kCommitPastLog,        // a heartbeat whose commit index is past our log
  kAckPastLog,           // an acknowledgement of entries the leader does not have
  kMalformedSnapshot,    // a snapshot of index 0, or of a later term than the message
};

const char* violation_name(Violation v);

// Terms at or past this are refused: a cluster would need 2^62 elections to get there.
inline constexpr Term kMaxTerm = Term{1} << 62;
// A term more than this ahead of a node's own is refused too: elections add one at a time, and a
// node that believed such a jump would let one forged message use up the term space (every later
// campaign would need a term past kMaxTerm).
inline constexpr Term kMaxTermJump = Term{1} << 32;

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };

const char* role_name(Role role);

// A read that became safe: once the state machine has applied `index`, a read for `context`
// served from it is linearizable.
struct ReadState {
  Index index = 0;
  std::string context;

  bool operator==(const ReadState&) const = default;
};

}  // namespace raftnginx::raft
