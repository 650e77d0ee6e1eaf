// Env: every file-system call the storage layer makes, behind one interface (LevelDB's idea), so
// that tests can inject failed writes, failed fsyncs, short writes, a full disk, or a crash that
// loses whatever was not synced.
//
// Threads: an Env is shared by the whole process and must be thread-safe (the node calls it from
// its raft loop, its snapshot threads and the transport's file thread at once). A file it opens
// belongs to one thread at a time. Durability: nothing written is durable until sync() (a file's
// data), sync_dir() (a directory's entries) or write_file_atomically() returns ok.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "raftnginx/status.h"

namespace raftnginx::storage {

// A file open for writing from some offset on (its end, or a place inside it). Used by one
// thread at a time.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Writes all of `data` where the last write ended, or fails (and the file may then hold any
  // prefix of it).
  virtual Status append(std::string_view data) = 0;
  // Makes everything appended so far durable (fdatasync).
  virtual Status sync() = 0;
  virtual Status close() = 0;
};

// A file read from start to end in pieces, so that large files (snapshots) never sit in memory
// whole.
class SequentialFile {
 public:
  virtual ~SequentialFile() = default;
  // Replaces *out with the next up to `n` bytes; fewer than `n` (possibly none) only at the end.
  virtual Status read(size_t n, std::string* out) = 0;
  // Moves past the next `n` bytes without reading them (past the end: reads then return none).
  virtual Status skip(uint64_t n) = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // The process-wide POSIX implementation.
  static Env* posix();

  // Opens `path` for appending, creating it if missing; its current size is returned in `size`.
  virtual Result<std::unique_ptr<WritableFile>> open_for_append(const std::string& path,
                                                                uint64_t* size) = 0;
  // Opens an existing file for writing in place, from `offset` on (a preallocated log segment).
  virtual Result<std::unique_ptr<WritableFile>> open_at(const std::string& path,
                                                        uint64_t offset) = 0;
  // Gives an existing file `size` bytes, reserved on the disk and reading as zeros where
  // nothing was written (fallocate). Durable with the file's next sync.
  virtual Status allocate(const std::string& path, uint64_t size) = 0;
  virtual Result<uint64_t> file_size(const std::string& path) = 0;
  virtual Result<std::unique_ptr<SequentialFile>> open_for_read(const std::string& path) = 0;
  // Reads a whole (small) file.
  virtual Result<std::string> read_file(const std::string& path) = 0;
  // Replaces `path` with `data` atomically and durably (temp file, fsync, rename, fsync dir).
  virtual Status write_file_atomically(const std::string& path, std::string_view data) = 0;
  // Names (not paths) of the entries in a directory, sorted.
  virtual Result<std::vector<std::string>> list_dir(const std::string& path) = 0;
  // Creates the directory and any missing parents, durably (each new one's parent is synced).
  virtual Status create_dirs(const std::string& path) = 0;
  virtual bool exists(const std::string& path) = 0;
  virtual Status remove_file(const std::string& path) = 0;
  virtual Status remove_all(const std::string& path) = 0;
  virtual Status rename(const std::string& from, const std::string& to) = 0;
  virtual Status truncate(const std::string& path, uint64_t size) = 0;
  // Makes a directory's entries (creations, renames, deletions) durable.
  virtual Status sync_dir(const std::string& path) = 0;
  // Bytes this process may still write on the file system that holds `path`.
  virtual Result<uint64_t> free_bytes(const std::string& path) = 0;
};

}  // namespace raftnginx::storage
