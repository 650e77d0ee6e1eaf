#include "audit_log.h"

#include <algorithm>
#include <cstdio>

namespace raftnginx::examples {
namespace {

// FNV-1a, 64 bits: the same on every replica.
uint64_t fnv1a64(std::string_view data) {
  uint64_t hash = 14695981039346656037ull;
  for (const char c : data) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

constexpr const char* kSnapshotFile = "/audit.log";

// The running hash of a trail after one more line (without its newline).
uint64_t fold(uint64_t hash, std::string_view line) {
  return hash * 1099511628211ull + fnv1a64(line);
}

uint64_t hash_of_lines(std::string_view data) {
  uint64_t hash = 0;
  for (size_t start = 0; start < data.size();) {
    const size_t end = data.find('\n', start);
    if (end == std::string_view::npos)
      break;
    hash = fold(hash, data.substr(start, end - start));
    start = end + 1;
  }
  return hash;
}

class PrefixSnapshot final : public fsm::Snapshot {
 public:
  PrefixSnapshot(std::string path, uint64_t size, raft::Index index, raft::Term term)
      : path_(std::move(path)), size_(size), index_(index), term_(term) {}
  raft::Index index() const override { return index_; }
  raft::Term term() const override { return term_; }
  Status write_to(storage::Env* env, const std::string& dir) override {
    auto data = env->read_file(path_);
    if (!data.ok())
      return data.status();
    if (data->size() < size_)
      return Status::corruption(path_ + " shrank under a snapshot");
    return env->write_file_atomically(dir + kSnapshotFile,
                                      std::string_view(*data).substr(0, size_));
  }

 private:
  std::string path_;
  uint64_t size_;
  raft::Index index_;
  raft::Term term_;
};

}  // namespace

Result<std::unique_ptr<AuditLog>> AuditLog::open(storage::Env* env, std::string path) {
  std::unique_ptr<AuditLog> log(new AuditLog(env, std::move(path)));
  if (Status s = log->load(); !s.ok())
    return s;
  return log;
}

Status AuditLog::load() {
  std::string data;
  if (auto existing = env_->read_file(path_); existing.ok()) {
    data = std::move(existing).value();
  } else if (existing.status().code() != Status::Code::kNotFound) {
    return existing.status();
  }
  // Keep whole lines only; the last one may have been cut short by a crash.
  const size_t end = data.rfind('\n');
  const uint64_t keep = end == std::string::npos ? 0 : end + 1;
  if (keep < data.size()) {
    if (Status s = env_->truncate(path_, keep); !s.ok())
      return s;
  }
  applied_index_ = 0;
  applied_term_ = 0;
  hash_ = hash_of_lines(std::string_view(data).substr(0, keep));
  if (keep > 0) {
    const size_t start = data.rfind('\n', keep - 2);
    const std::string last = data.substr(start == std::string::npos ? 0 : start + 1);
    unsigned long long index = 0;
    unsigned long long term = 0;
    if (std::sscanf(last.c_str(), "%llu %llu", &index, &term) != 2)
      return Status::corruption(path_ + ": unreadable last line");
    applied_index_ = index;
    applied_term_ = term;
  }
  auto file = env_->open_for_append(path_, &size_);
  if (!file.ok())
    return file.status();
  file_ = std::move(file).value();
  return Status();
}

Status AuditLog::apply(std::span<const fsm::Command> commands,
                       std::vector<fsm::ApplyResult>* results) {
  std::lock_guard lock(mu_);
  std::string lines;
  raft::Index last = 0;
  raft::Term last_term = 0;
  uint64_t hash = hash_;
  for (const fsm::Command& c : commands) {
    if (c.data.find('\n') != std::string_view::npos) {
      // One line per command. A refused command changes nothing, and it leaves the applied
      // index where the last line put it (the index must be durable with the effects, and a
      // refusal has none): after a restart it is handed over again, and refused again.
      results->push_back(fsm::ApplyResult{Status::invalid_argument("newline in command"), {}});
      continue;
    }
    last = c.index;
    last_term = c.term;
    const std::string line =
        std::to_string(c.index) + " " + std::to_string(c.term) + " " + std::string(c.data);
    hash = fold(hash, line);
    lines += line + '\n';
    results->push_back(fsm::ApplyResult{Status(), std::to_string(c.index)});
  }
  // The lines carry their indexes: written and synced together, they are the applied index.
  if (lines.empty())
    return Status();
  if (Status s = file_->append(lines); !s.ok())
    return s;
  if (Status s = file_->sync(); !s.ok())
    return s;
  size_ += lines.size();
  applied_index_ = last;
  applied_term_ = last_term;
  hash_ = hash;
  return Status();
}

std::optional<uint64_t> AuditLog::state_hash() const {
  std::lock_guard lock(mu_);
  return hash_;
}

Status AuditLog::scrub(Pace& pace) {
  // The trail as of now: lines are only appended, so its first `size` bytes must hash to `hash`
  // whatever is appended while they are read (without the lock: apply goes on).
  uint64_t size = 0;
  uint64_t hash = 0;
  {
    std::lock_guard lock(mu_);
    size = size_;
    hash = hash_;
  }
  auto file = env_->open_for_read(path_);
  if (!file.ok())
    return file.status();
  std::string data;
  while (data.size() < size) {
    std::string piece;
    if (Status s = (*file)->read(std::min<uint64_t>(size - data.size(), 1 << 20), &piece); !s.ok())
      return s;
    if (piece.empty())
      return Status::corruption(path_ + " is shorter than the lines appended to it");
    data += piece;
    if (!pace.consumed(piece.size()))
      return Status();  // called off: no verdict
  }
  if (hash_of_lines(data) != hash)
    return Status::corruption(path_ + " no longer holds the lines that were appended to it");
  return Status();
}

raft::Index AuditLog::applied_index() const {
  std::lock_guard lock(mu_);
  return applied_index_;
}

raft::Term AuditLog::applied_term() const {
  std::lock_guard lock(mu_);
  return applied_term_;
}

Result<std::unique_ptr<fsm::Snapshot>> AuditLog::snapshot() {
  std::lock_guard lock(mu_);
  return std::unique_ptr<fsm::Snapshot>(
      new PrefixSnapshot(path_, size_, applied_index_, applied_term_));
}

Status AuditLog::restore(storage::Env* env, const std::string& dir, raft::Index index,
                         raft::Term term) {
  auto data = env->read_file(dir + kSnapshotFile);
  if (!data.ok())
    return data.status();
  std::lock_guard lock(mu_);
  if (Status s = file_->close(); !s.ok())
    return s;
  if (Status s = env_->write_file_atomically(path_, *data); !s.ok())
    return s;
  if (Status s = load(); !s.ok())
    return s;
  if (applied_index_ != index || applied_term_ != term)
    return Status::corruption("audit snapshot does not end at " + std::to_string(index));
  return Status();
}

Result<std::string> AuditLog::contents() const {
  uint64_t size = 0;
  {
    std::lock_guard lock(mu_);
    size = size_;
  }
  // Lines are only ever appended: the first `size` bytes are whole lines, whatever comes after.
  auto data = env_->read_file(path_);
  if (data.ok() && data->size() > size)
    data.value().resize(size);
  return data;
}

}  // namespace raftnginx::examples
