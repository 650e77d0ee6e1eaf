#include "fault_env.h"

#include <algorithm>
#include <optional>

namespace raftnginx::storage::testing {

class FaultFile final : public WritableFile {
 public:
  // `offset`: where an in-place file's writes begin; nullopt for an appended one.
  FaultFile(FaultEnv* env, std::string path, std::unique_ptr<WritableFile> base,
            std::optional<uint64_t> offset)
      : env_(env), path_(std::move(path)), base_(std::move(base)), offset_(offset) {}

  Status append(std::string_view data) override {
    std::lock_guard lock(env_->mu_);
    if (env_->failing_writes_ > 0) {
      --env_->failing_writes_;
      return Status::io_error("write " + path_ + ": Input/output error (injected)");
    }
    if (env_->short_write_) {
      env_->short_write_ = false;
      (void)write(data.substr(0, data.size() / 2));
      return Status::io_error("write " + path_ + ": short write (injected)");
    }
    // Writing in place, into space already allocated, needs none; appending does.
    if (!offset_ && env_->space_left_ >= 0) {
      if (static_cast<int64_t>(data.size()) > env_->space_left_) {
        (void)write(data.substr(0, static_cast<size_t>(env_->space_left_)));
        env_->space_left_ = 0;
        return Status::io_error("write " + path_ + ": No space left on device (injected)");
      }
      env_->space_left_ -= static_cast<int64_t>(data.size());
    }
    return write(data);
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
    state.unsynced.clear();
    return Status();
  }

  Status close() override { return base_->close(); }

 private:
  // Writes through, and notes what a power loss would take back. Caller holds env_->mu_.
  Status write(std::string_view data) {
    if (Status s = base_->append(data); !s.ok())
      return s;
    auto& state = env_->files_[path_];
    if (offset_) {
      state.unsynced.emplace_back(*offset_, data.size());
      *offset_ += data.size();
    } else {
      state.size += data.size();
    }
    return Status();
  }

  FaultEnv* env_;
  std::string path_;
  std::unique_ptr<WritableFile> base_;
  std::optional<uint64_t> offset_;
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
  return std::unique_ptr<WritableFile>(
      new FaultFile(this, path, std::move(file).value(), std::nullopt));
}

Result<std::unique_ptr<WritableFile>> FaultEnv::open_at(const std::string& path, uint64_t offset) {
  std::lock_guard lock(mu_);
  auto file = base_->open_at(path, offset);
  if (!file.ok())
    return file;
  auto [it, inserted] = files_.try_emplace(path);
  if (inserted) {
    auto size = base_->file_size(path);
    it->second.size = it->second.synced = size.ok() ? *size : 0;
  }
  return std::unique_ptr<WritableFile>(new FaultFile(this, path, std::move(file).value(), offset));
}

Status FaultEnv::allocate(const std::string& path, uint64_t size) {
  std::lock_guard lock(mu_);
  if (space_left_ >= 0) {
    if (static_cast<int64_t>(size) > space_left_)
      return Status::io_error("fallocate " + path + ": No space left on device (injected)");
    space_left_ -= static_cast<int64_t>(size);
  }
  if (Status s = base_->allocate(path, size); !s.ok())
    return s;
  // The new size is durable with the file's next sync, as appended bytes are.
  files_[path].size = std::max(files_[path].size, size);
  return Status();
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
    for (const auto& [offset, length] : state.unsynced) {
      if (auto file = base_->open_at(path, offset); file.ok())
        (void)(*file)->append(std::string(length, '\0'));
    }
    state.unsynced.clear();
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
