#include "fsm/memory_kv.h"

#include <mutex>

#include "util/checksum.h"
#include "util/coding.h"

namespace raftnginx::fsm {
namespace {

constexpr const char* kSnapshotFile = "/kv.data";
constexpr uint32_t kSnapshotMagic = 0x4b4e5232;  // "2RNK"

// File layout: magic (4) | index (8) | term (8) | count (8) | count x [key | value]
//              | crc32 of everything before (4)
class MemorySnapshot final : public Snapshot {
 public:
  MemorySnapshot(raft::Index index, raft::Term term, std::string body)
      : index_(index), term_(term), body_(std::move(body)) {}
  raft::Index index() const override { return index_; }
  raft::Term term() const override { return term_; }
  Status write_to(storage::Env* env, const std::string& dir) override {
    std::string out = body_;
    put_u32(&out, crc32(out));
    return env->write_file_atomically(dir + kSnapshotFile, out);
  }

 private:
  raft::Index index_;
  raft::Term term_;
  std::string body_;
};

}  // namespace

Status MemoryKv::apply(std::span<const Command> commands, std::vector<ApplyResult>* results) {
  std::unique_lock lock(mu_);
  for (const Command& cmd : commands) {
    results->push_back(apply_kv_command(
        cmd,
        [this](std::string key, std::string value) {
          auto [it, inserted] = data_.try_emplace(std::move(key));
          if (!inserted)
            hash_ -= kv_pair_hash(it->first, it->second);
          it->second = std::move(value);
          hash_ += kv_pair_hash(it->first, it->second);
        },
        [this](const std::string& key) {
          if (auto it = data_.find(key); it != data_.end()) {
            hash_ -= kv_pair_hash(it->first, it->second);
            data_.erase(it);
          }
        }));
    applied_index_ = cmd.index;
    applied_term_ = cmd.term;
  }
  return Status();
}

std::optional<uint64_t> MemoryKv::state_hash() const {
  std::shared_lock lock(mu_);
  return hash_;
}

raft::Index MemoryKv::applied_index() const {
  std::shared_lock lock(mu_);
  return applied_index_;
}

raft::Term MemoryKv::applied_term() const {
  std::shared_lock lock(mu_);
  return applied_term_;
}

Result<std::optional<std::string>> MemoryKv::get(std::string_view key) const {
  std::shared_lock lock(mu_);
  auto it = data_.find(key);
  if (it == data_.end())
    return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Result<std::unique_ptr<Snapshot>> MemoryKv::snapshot() {
  std::shared_lock lock(mu_);
  std::string body;
  put_u32(&body, kSnapshotMagic);
  put_u64(&body, applied_index_);
  put_u64(&body, applied_term_);
  put_u64(&body, data_.size());
  for (const auto& [key, value] : data_) {
    put_bytes(&body, key);
    put_bytes(&body, value);
  }
  return std::unique_ptr<Snapshot>(
      new MemorySnapshot(applied_index_, applied_term_, std::move(body)));
}

Status MemoryKv::restore(storage::Env* env, const std::string& dir, raft::Index index,
                         raft::Term term) {
  auto file = env->read_file(dir + kSnapshotFile);
  if (!file.ok())
    return file.status();
  const std::string_view in = *file;
  if (in.size() < 4 || crc32(in.substr(0, in.size() - 4)) != decode_u32(in.data() + in.size() - 4))
    return Status::corruption("memory snapshot in " + dir + ": checksum mismatch");
  Reader r(in.substr(0, in.size() - 4));
  if (r.u32() != kSnapshotMagic)
    return Status::corruption("memory snapshot in " + dir + ": not a memory snapshot");
  const raft::Index file_index = r.u64();
  const raft::Term file_term = r.u64();
  if (file_index != index || file_term != term) {
    return Status::corruption("memory snapshot in " + dir + " covers " +
                              std::to_string(file_index) + ", expected " + std::to_string(index));
  }
  std::map<std::string, std::string, std::less<>> data;
  uint64_t hash = 0;
  const uint64_t count = r.u64();
  for (uint64_t i = 0; i < count && r.ok(); ++i) {
    std::string key(r.bytes());
    std::string value(r.bytes());
    hash += kv_pair_hash(key, value);
    data[std::move(key)] = std::move(value);
  }
  if (!r.done())
    return Status::corruption("memory snapshot in " + dir + ": malformed");
  std::unique_lock lock(mu_);
  data_ = std::move(data);
  hash_ = hash;
  applied_index_ = index;
  applied_term_ = term;
  return Status();
}

}  // namespace raftnginx::fsm
