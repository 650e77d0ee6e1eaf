// Binary encodings of the core's values, shared by the wire protocol and the on-disk formats.
// The core itself never encodes anything; these are for the runtime around it.
//
//   entry:       term (8) | index (8) | type (1) | data (4 + n)
//   conf state:  voters count (4) | ids (8 each) | learners count (4) | ids (8 each)
//   message:     version (1) | type (1) | from, to, term, index, log_term, commit (8 each)
//                | flags (1: bit 0 reject, bit 1 transfer) | reject_hint (8) | read_seq (8)
//                | context (4 + n) | entry count (4) | entries
//                | snapshot index (8) | snapshot term (8) | snapshot conf state
#pragma once

#include <string>

#include "raft/types.h"
#include "util/coding.h"

namespace raftnginx::raft {

void put_entry(std::string* out, const Entry& e);
// REQUIRES: the caller checks r.ok() afterwards.
Entry read_entry(Reader& r);
void put_conf_state(std::string* out, const ConfState& conf);
ConfState read_conf_state(Reader& r);

std::string encode_message(const Message& m);
// Corruption for anything malformed (truncated, unknown type, trailing bytes), NotSupported for
// an unknown version: a peer's bytes are never trusted.
Result<Message> decode_message(std::string_view data);

}  // namespace raftnginx::raft
