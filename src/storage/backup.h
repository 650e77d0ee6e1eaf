// Backup: one file holding a state machine's snapshot files, taken from a running cluster
// (GET /backup) and read back to seed a new cluster (raft-nginx restore) or to replace a running
// cluster's state (POST /restore).
//
//   magic "RNBACKUP" | version (1) = 1 | cluster id (4 + n) | state machine name (4 + n)
//   | index (8) | term (8) | taken at (8, ms since the Unix epoch) | taken by (4 + n)
//   | file count (4) | per file: name (4 + n), size (8), crc32 (4)
//   | every file's bytes, in the order listed
//   | SHA-256 (32) of everything before it
//
// The files are what the backend's Snapshot::write_to wrote at (index, term): the state after
// the command at `index` and nothing else (no membership, no sessions). The digest comes last so
// that a backup streams as it is read from disk; a file cut short or changed anywhere fails it.
//
// Threads: plain values and functions; BackupEncoder belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "raft/types.h"
#include "raftnginx/env.h"
#include "storage/snapshot_store.h"

namespace raftnginx::storage {

struct BackupHeader {
  std::string cluster_id;
  std::string fsm_name;
  raft::Index index = 0;
  raft::Term term = 0;
  uint64_t taken_at_ms = 0;
  std::string taken_by;  // the member that took it
  std::vector<SnapshotFile> files;
};

// A backup read into memory and checked: every file is a view into the bytes it was read from.
struct Backup {
  BackupHeader header;
  std::vector<std::string_view> contents;  // one per header.files entry
};

// Checks the digest, then the structure (names, sizes, crc32 of each file). Corruption says
// what is wrong, in words an operator can act on.
Result<Backup> decode_backup(std::string_view data);

// Writes the backup's files into `dir` (which exists and is empty) and syncs them.
Status write_backup_files(Env* env, const std::string& dir, const Backup& backup);

// Produces a backup piece by piece: header() first, then each file's bytes through body(), in
// the order of header.files, then finish(). Each returns the bytes to send next.
class BackupEncoder {
 public:
  BackupEncoder();
  ~BackupEncoder();
  BackupEncoder(const BackupEncoder&) = delete;
  BackupEncoder& operator=(const BackupEncoder&) = delete;

  std::string header(const BackupHeader& header);
  std::string body(std::string_view bytes);
  std::string finish();

 private:
  struct Digest;
  std::unique_ptr<Digest> digest_;
};

}  // namespace raftnginx::storage
