// The envelope the node wraps each client command in before proposing it:
//
//   version (1) = 2 | request id (4 + n) | proposed at (8, the leader's wall clock in ms since
//   the Unix epoch) | command
//
// The request id makes the write exactly-once (session_table.h); the time lets every node evict
// sessions (and expire keys) at the same point of the log, without reading its own clock.
//
// A checkpoint is an entry of one byte, 3: no command. Every node records its state machine's
// hash as of the entry before it when it applies one, so that replicas compare their state at
// the same point of the log (replica checks).
//
// A replacement is 4 followed by a backup (storage/backup.h): every node replaces its state
// machine's whole state with the backup's when it applies it (POST /restore).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "raftnginx/status.h"

namespace raftnginx::node {

struct Envelope {
  std::string_view request_id;
  uint64_t time_ms = 0;
  std::string_view command;
};

std::string encode_envelope(std::string_view request_id, uint64_t time_ms,
                            std::string_view command);
// Corruption if `data` is not an envelope of this version.
Result<Envelope> decode_envelope(std::string_view data);

std::string encode_checkpoint();
bool is_checkpoint(std::string_view data);

std::string encode_replacement(std::string_view backup);
// The backup a replacement carries, or nullopt if `data` is not one.
std::optional<std::string_view> replacement_of(std::string_view data);

}  // namespace raftnginx::node
