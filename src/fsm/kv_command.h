// The commands of the built-in key-value store, their results, and their versioned binary
// encodings. Every command is a transaction: compares, then the ops for success or for failure,
// applied atomically at the command's index (kv_apply.h says what each does).
//
//   version 3:  3 (1) | guards | compares | success ops | failure ops  (guards in compares' form)
//   version 2:  2 (1) | compares | success ops | failure ops
//     compares:  count (4) | count x [key (4 + n) | field (1) | u64 (8) | value (4 + n)]
//     ops:       count (4) | count x [kind (1) | key (4 + n) | value (4 + n) | u64 (8)]
//                  put: the u64 is the TTL in ms (0: none); expire: the mod_index it expires
//   version 1 (before revisions; still read from old logs):
//     1 (1) | op (1) | body     op 1, set: count (4) | count x [key | value]
//                                op 2, delete: count (4) | count x key
//
// A decoder that meets a version, op or field it does not know says NotSupported, so that a node
// of an older release refuses a newer command instead of misreading it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "raftnginx/status.h"
#include "raftnginx/types.h"

namespace raftnginx::fsm {

// The most compares and ops a client's transaction (POST /txn) may carry together. A command
// itself is bounded only by its size: a POST /key sets as many keys as its body holds.
inline constexpr size_t kMaxTxnOps = 128;

// A key's value and its revisions. The indexes are the Raft indexes of the entries that made
// the change: the same on every node. A key written by a version-1 command (before revisions)
// carries zeros.
struct KvRecord {
  std::string value;
  raft::Index create_index = 0;  // the entry that created the key
  raft::Index mod_index = 0;     // the entry that last changed it
  uint64_t version = 0;          // writes since it was created (1 after the first)
  uint64_t expires_at_ms = 0;    // its deadline (ms since the Unix epoch), 0: none

  // Whether its deadline has passed at `now_ms`: then every read and compare takes it as absent.
  bool expired_at(uint64_t now_ms) const { return expires_at_ms != 0 && expires_at_ms <= now_ms; }
  bool operator==(const KvRecord&) const = default;
};

// A record as the backends store it: format (1) = 1 | create | mod | version | expires (8 each)
// | value.
std::string encode_kv_record(const KvRecord& record);
Result<KvRecord> decode_kv_record(std::string_view stored);

struct KvCompare {
  enum class Field : uint8_t { kModIndex = 1, kVersion = 2, kValue = 3, kExists = 4 };
  std::string key;
  Field field = Field::kModIndex;
  uint64_t number = 0;  // kModIndex, kVersion; kExists: 1 or 0
  std::string value;    // kValue

  bool operator==(const KvCompare&) const = default;
};

struct KvOp {
  enum class Kind : uint8_t { kPut = 1, kDelete = 2, kDeletePrefix = 3, kGet = 4, kExpire = 5 };
  Kind kind = Kind::kPut;
  std::string key;  // the prefix, for kDeletePrefix
  std::string value;
  // kPut: TTL in ms (0: none); kExpire: the mod_index being expired; kGet: 1 for the
  // revisions only, without the value.
  uint64_t number = 0;

  bool operator==(const KvOp&) const = default;
};

// What one command may remove with one delete-prefix op (the result says if more remain), and
// the values its gets may return together (beyond, a get returns the revisions only and says
// so): bounds on what one entry makes every replica hold, and on the result kept for retries.
inline constexpr size_t kMaxDeletePrefixKeys = 10000;
inline constexpr size_t kMaxResultValueBytes = 1 << 20;

struct KvCommand {
  std::vector<KvCompare> compares;
  std::vector<KvOp> success;  // applied if every compare holds
  std::vector<KvOp> failure;  // applied otherwise
  bool legacy = false;        // decoded from version 1: writes carry no revisions
  // If one fails, the whole command is refused (Busy) and changes nothing: the state it was
  // prepared against has changed (kv/gateway_files.h). Encoded as version 3, and only if any.
  std::vector<KvCompare> guards;

  bool operator==(const KvCommand&) const = default;
};

// What one op did. put: the record written; get: the record, if found; delete, delete-prefix,
// expire: how many keys went.
struct KvOpResult {
  bool found = false;  // get: the key exists; delete-prefix: more keys remain under the prefix
  KvRecord record;
  uint64_t deleted = 0;  // get: 1 if the value was left out (asked, or over the budget)

  bool operator==(const KvOpResult&) const = default;
};

struct KvResult {
  bool succeeded = true;            // whether every compare held
  std::vector<KvOpResult> results;  // one per op of the branch taken

  bool operator==(const KvResult&) const = default;
};

std::string encode_kv_command(const KvCommand& cmd);
Result<KvCommand> decode_kv_command(std::string_view data);
// What makes `data` (an encoded command) the request it is (StateMachine::request_identity):
// all of it but its guards, which say what the node that made it had read.
std::string_view kv_request_identity(std::string_view data);

std::string encode_kv_result(const KvResult& result);
Result<KvResult> decode_kv_result(std::string_view data);

}  // namespace raftnginx::fsm
