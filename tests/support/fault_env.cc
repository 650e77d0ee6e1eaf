#include "fault_env.h"

#include <algorithm>

namespace raftnginx::storage::testing {

class FaultFile final : public WritableFile {
 public:
  FaultFile(FaultEnv* env, std::string path, std::unique_ptr<WritableFile> base)
      : env_(env), path_(std::move(path)), base_(std::move(base)) {}

  Status append(std::string_view data) override {
    std::lock_guard lock(env_->mu_);
    auto& state = env_->files_[path_];
    if (env_->failing_writes_ > 0) {
      --env_->failing_writes_;
      return Status::io_error("write " + path_ + ": Input/output error (injected)");
    }
    if (env_->short_write_) {
      env_->short_write_ = false;
      const std::string_view half = data.substr(0, data.size() / 2);
      if (Status s = base_->append(half); !s.ok())
        return s;
      state.size += half.size();
      return Status::io_error("write " + path_ + ": short write (injected)");
    }
    if (env_->space_left_ >= 0 && static_cast<int64_t>(data.size()) > env_->space_left_) {
      const std::string_view fits = data.substr(0, static_cast<size_t>(env_->space_left_));
      if (Status s = base_->append(fits); !s.ok())
        return s;
      state.size += fits.size();
      env_->space_left_ = 0;
      return Status::io_error("write " + path_ + ": No space left on device (injected)");
    }
    if (Status s = base_->append(data); !s.ok())
      return s;
    state.size += data.size();
    if (env_->space_left_ >= 0)
      env_->space_left_ -= static_cast<int64_t>(data.size());
    return Status();
  }

  Status sync() override {
    std::lock_guard lock(env_->mu_);
    if (env_->failing_syncs_ > 0) {
      --env_->failing_syncs_;
      return Status::io_error("fdatasync " + path_ + ": Input/output error (injected)");
    }
    if (Status s = base_->sync(); !s.ok())
      return s;
    auto& state = env_->files_[path_];
    state.synced = state.size;
    return Status();
  }

  Status close() override { return base_->close(); }

 private:
  FaultEnv* env_;
  std::string path_;
  std::unique_ptr<WritableFile> base_;
};

Result<std::unique_ptr<WritableFile>> FaultEnv::open_for_append(const std::string& path,
                                                                uint64_t* size) {
  std::lock_guard lock(mu_);
  auto file = base_->open_for_append(path, size);
  if (!file.ok())
    return file;
  auto [it, inserted] = files_.try_emplace(path);
  if (inserted) {
    // What exists when we first see a file counts as durable.
    it->second.size = *size;
    it->second.synced = *size;
  }
  return std::unique_ptr<WritableFile>(new FaultFile(this, path, std::move(file).value()));
}

Status FaultEnv::write_file_atomically(const std::string& path, std::string_view data) {
  std::lock_guard lock(mu_);
  if (failing_writes_ > 0) {
    --failing_writes_;
    return Status::io_error("write " + path + ": Input/output error (injected)");
  }
  return base_->write_file_atomically(path, data);
}

Status FaultEnv::remove_file(const std::string& path) {
  std::lock_guard lock(mu_);
  files_.erase(path);
  return base_->remove_file(path);
}

Status FaultEnv::rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  if (auto it = files_.find(from); it != files_.end()) {
    files_[to] = it->second;
    files_.erase(it);
  }
  return base_->rename(from, to);
}

Status FaultEnv::truncate(const std::string& path, uint64_t size) {
  std::lock_guard lock(mu_);
  if (auto it = files_.find(path); it != files_.end()) {
    it->second.size = std::min(it->second.size, size);
    it->second.synced = std::min(it->second.synced, size);
  }
  return base_->truncate(path, size);
}

void FaultEnv::lose_unsynced() {
  std::lock_guard lock(mu_);
  for (auto& [path, state] : files_) {
    if (state.size > state.synced) {
      (void)base_->truncate(path, state.synced);
      state.size = state.synced;
    }
  }
}

Result<uint64_t> FaultEnv::free_bytes(const std::string& path) {
  auto real = base_->free_bytes(path);
  std::lock_guard lock(mu_);
  if (!real.ok() || space_left_ < 0)
    return real;
  return std::min<uint64_t>(*real, static_cast<uint64_t>(space_left_));
}

}  // namespace raftnginx::storage::testing
