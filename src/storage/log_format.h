// The log segment's format on disk (docs/storage.md), apart from any file so that it can be
// tested and fuzzed alone. Pure functions; thread-safe.
//
//   segment  header (32) | records | zeros up to the size in the header
//     header   magic "RNGXLOG2" (8) | seq (8) | size (8: the whole file's, preallocated)
//              | salt (4: random) | masked crc32 of the 28 bytes before (4)
//   record   magic "RNR2" (4) | length (4) | type (1) | synced (8) | masked crc32 of the payload
//            (4) | masked crc32 of the 21 bytes before (4) | payload (length bytes)
//     crc32s   of records start from the segment's salt: a record that a client smuggled into
//              a value (a PUT whose body is a well-formed record) never checks out as one
//     synced   the segment offset up to which the file was durable (fsynced) when this record
//              was written: a record that says so proves that everything before that offset had
//              been acknowledged, so damage there is corruption, never a torn write
//     types    1 batch and 2 snapshot (log_store.h), 3 seal: written and synced when the log
//              shuts down cleanly (payload 0) or the segment is closed for the next one
//              (payload 1, written once that one is made, before it is renamed into place), so
//              that even the last record before it has a witness
//
// A segment is created whole (its size allocated, its header synced, then renamed into place),
// so a file shorter or longer than its header says was cut or grown by someone else.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "raftnginx/status.h"

namespace raftnginx::storage {

inline constexpr const char* kSegmentSuffix = ".seg";
// A segment being made: never replayed, removed at start-up.
inline constexpr const char* kUnfinishedSuffix = ".new";

inline constexpr size_t kSegmentHeaderSize = 32;
inline constexpr size_t kRecordHeaderSize = 25;

inline constexpr uint8_t kBatchRecord = 1;
inline constexpr uint8_t kSnapshotRecord = 2;
inline constexpr uint8_t kSealRecord = 3;

inline constexpr uint8_t kSealShutdown = 0;
inline constexpr uint8_t kSealRotated = 1;

struct SegmentHeader {
  uint64_t seq = 0;
  uint64_t size = 0;
  uint32_t salt = 0;
};

std::string encode_segment_header(const SegmentHeader& header);
// Corruption if `bytes` (at least kSegmentHeaderSize) is not a header of this format.
Result<SegmentHeader> decode_segment_header(std::string_view bytes);

std::string encode_record(uint32_t salt, uint8_t type, uint64_t synced, std::string_view payload);

// What lies at some offset of a segment.
struct RecordAt {
  enum class Kind {
    kRecord,      // a whole, valid record
    kEnd,         // zeros: no record was ever written here
    kUnreadable,  // does not check out: a write that did not finish, or damage
    kDamaged,     // a valid header announcing what no write of ours could: damage
  };
  Kind kind = Kind::kEnd;
  uint8_t type = 0;
  uint64_t synced = 0;
  std::string_view payload;
  uint64_t size = 0;  // header and payload, for kRecord
  std::string why;    // for kUnreadable and kDamaged
};

// The length a record header at the start of `bytes` announces (0 if `bytes` holds no whole
// record header with a valid checksum): how much to read before calling read_record.
uint64_t announced_record_size(std::string_view bytes, uint32_t salt);

// Reads the record at `offset` of a segment of `segment_size` bytes, given the segment's bytes
// from `offset` on in `bytes`: at least kRecordHeaderSize of them, and the whole record if its
// header is valid (announced_record_size), unless the segment ends first.
RecordAt read_record(std::string_view bytes, uint64_t offset, uint64_t segment_size, uint32_t salt);

}  // namespace raftnginx::storage
