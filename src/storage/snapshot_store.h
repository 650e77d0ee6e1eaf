// SnapshotStore: snapshots on disk, one directory each, the newest few kept.
//
//   <dir>/<index, 20 digits>-<term, 20 digits>/   a sealed snapshot
//       meta                 index, term, membership (with each member's context), the state
//                            machine's name, and every file's size and crc32
//       ...                  the state machine's own files (written by Snapshot::write_to)
//   <dir>/tmp-<n>/           one being written or received; removed at open (a crash left it)
//
// A snapshot becomes visible only by the rename that seals it, after its files and meta are
// fsynced, so a crash never leaves a half-written snapshot that looks whole. A sealed snapshot's
// files never change; a pinned one is not deleted until unpinned.
//
// Threads: not thread-safe; the caller serializes every call (the node holds one lock around
// the store). The files of a sealed snapshot may be read from any thread meanwhile.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "raft/types.h"
#include "raftnginx/env.h"

namespace raftnginx {
class Pace;
}

namespace raftnginx::storage {

struct SnapshotFile {
  std::string name;
  uint64_t size = 0;
  uint32_t crc = 0;
};

struct SnapshotInfo {
  raft::SnapshotMeta meta;
  // Each member's context (its addresses), as the membership changes carried them.
  std::map<raft::NodeId, std::string> member_contexts;
  std::string fsm_name;
  std::vector<SnapshotFile> files;
  std::string dir;  // where it lives

  uint64_t bytes() const;
};

class SnapshotStore {
 public:
  // Opens the store in `dir` (created if missing), keeping the newest `retain` snapshots.
  static Result<std::unique_ptr<SnapshotStore>> open(Env* env, const std::string& dir,
                                                     size_t retain);

  // A fresh, empty directory to write a snapshot into.
  Result<std::string> begin();
  // Seals the snapshot written into `tmp_dir` (from begin()) and prunes older ones beyond
  // `retain`. `info.files` and `info.dir` are filled in here. With `expected` (a snapshot
  // received from a peer), the files must match it in names, sizes and checksums, or the
  // snapshot is discarded as Corruption.
  Result<SnapshotInfo> commit(const std::string& tmp_dir, SnapshotInfo info,
                              const std::vector<SnapshotFile>* expected = nullptr);
  // Discards a snapshot begun but not sealed.
  void abort(const std::string& tmp_dir);
  // A pinned snapshot is in use (being streamed to a peer, or waiting to be installed) and is not
  // pruned until every pin is released.
  void pin(raft::Index index) { ++pins_[index]; }
  Status unpin(raft::Index index);
  // Checks every file of a snapshot against its recorded size and checksum, reading at `pace`
  // if given. Safe on any thread for a sealed snapshot (NotFound if it was pruned meanwhile).
  Status verify(const SnapshotInfo& info, Pace* pace = nullptr) const;

  // The newest sealed snapshot, if any.
  std::optional<SnapshotInfo> latest() const;
  // Sealed snapshots, oldest first.
  const std::vector<SnapshotInfo>& snapshots() const { return snapshots_; }

 private:
  SnapshotStore(Env* env, std::string dir, size_t retain)
      : env_(env), dir_(std::move(dir)), retain_(retain) {}
  Status load();
  // Deletes the oldest unpinned snapshots beyond `retain`.
  Status prune();
  std::string fresh_tmp_path();  // a tmp- directory name not in use

  Env* env_;
  const std::string dir_;
  const size_t retain_;
  uint64_t next_tmp_ = 0;
  std::map<raft::Index, int> pins_;
  std::vector<SnapshotInfo> snapshots_;
};

// Whether `name` may name a file of a snapshot: not empty, at most 255 bytes, no '/' or NUL, not
// "." or "..", and not the store's own "meta". Names come from peers and backups too.
bool valid_snapshot_file_name(std::string_view name);
// The size and crc32 of every file in `dir`, read in pieces (each handed to `pace`, if any).
Result<std::vector<SnapshotFile>> scan_snapshot_files(Env* env, const std::string& dir,
                                                      Pace* pace = nullptr);

// The encoding of a snapshot's meta file, also used to send snapshot metadata to a peer.
std::string encode_snapshot_info(const SnapshotInfo& info);
Result<SnapshotInfo> decode_snapshot_info(std::string_view data);

}  // namespace raftnginx::storage
