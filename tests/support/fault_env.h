// FaultEnv: an Env over the real file system that fails on command and can simulate power loss.
//
//   fail_syncs / fail_writes:  the next N calls fail with an I/O error (EIO)
//   short_write_next:          the next append writes only half of its data, then fails
//   disk_full_after(bytes):    appends fail with "No space left on device" past that many bytes
//   lose_unsynced():           every file written through this Env loses what was not
//                              fsynced, as a power loss would leave it: appended bytes are cut
//                              off, bytes written in place (open_at) read as zeros again
//
// Thread-safe, as every Env must be: a test flips the switches while a node writes through it
// from its own threads.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "raftnginx/env.h"

namespace raftnginx::storage::testing {

class FaultEnv final : public Env {
 public:
  explicit FaultEnv(Env* base = Env::posix()) : base_(base) {}

  void fail_syncs(int n) {
    std::lock_guard lock(mu_);
    failing_syncs_ = n;
  }
  void fail_writes(int n) {
    std::lock_guard lock(mu_);
    failing_writes_ = n;
  }
  void short_write_next() {
    std::lock_guard lock(mu_);
    short_write_ = true;
  }
  void disk_full_after(uint64_t bytes) {
    std::lock_guard lock(mu_);
    space_left_ = static_cast<int64_t>(bytes);
  }
  void lose_unsynced();

  Result<std::unique_ptr<WritableFile>> open_for_append(const std::string& path,
                                                        uint64_t* size) override;
  Result<std::unique_ptr<WritableFile>> open_at(const std::string& path, uint64_t offset) override;
  Status allocate(const std::string& path, uint64_t size) override;
  Result<uint64_t> file_size(const std::string& path) override { return base_->file_size(path); }
  Result<std::unique_ptr<SequentialFile>> open_for_read(const std::string& path) override {
    return base_->open_for_read(path);
  }
  Result<std::string> read_file(const std::string& path) override { return base_->read_file(path); }
  Status write_file_atomically(const std::string& path, std::string_view data) override;
  Result<std::vector<std::string>> list_dir(const std::string& path) override {
    return base_->list_dir(path);
  }
  Status create_dirs(const std::string& path) override { return base_->create_dirs(path); }
  bool exists(const std::string& path) override { return base_->exists(path); }
  Status remove_file(const std::string& path) override;
  Status remove_all(const std::string& path) override { return base_->remove_all(path); }
  Status rename(const std::string& from, const std::string& to) override;
  Status truncate(const std::string& path, uint64_t size) override;
  Status sync_dir(const std::string& path) override { return base_->sync_dir(path); }
  // The real free space, or less once disk_full_after() was called.
  Result<uint64_t> free_bytes(const std::string& path) override;

 private:
  friend class FaultFile;
  struct FileState {
    uint64_t size = 0;  // appended files: bytes written, and durable
    uint64_t synced = 0;
    std::vector<std::pair<uint64_t, uint64_t>> unsynced;  // in place: (offset, length) written
  };

  Env* base_;
  std::mutex mu_;  // guards everything below
  int failing_syncs_ = 0;
  int failing_writes_ = 0;
  bool short_write_ = false;
  int64_t space_left_ = -1;  // -1: unlimited
  std::map<std::string, FileState> files_;
};

}  // namespace raftnginx::storage::testing
