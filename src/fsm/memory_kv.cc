#include "fsm/memory_kv.h"

#include <mutex>

#include "util/checksum.h"
#include "util/coding.h"

namespace raftnginx::fsm {
namespace {

constexpr const char* kSnapshotFile = "/kv.data";
constexpr uint32_t kSnapshotMagic = 0x4b4e5233;        // "3RNK": key | record (kv_command.h)
constexpr uint32_t kLegacySnapshotMagic = 0x4b4e5232;  // "2RNK": key | value, before revisions

// File layout: magic (4) | index (8) | term (8) | count (8) | count x [key | record]
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

namespace {

// The map itself: a command's writes land at once, and the ones after it see them.
class MapTable final : public KvTable {
 public:
  explicit MapTable(std::map<std::string, KvRecord, std::less<>>* data) : data_(data) {}
  Result<std::optional<KvRecord>> find(const std::string& key) override {
    auto it = data_->find(key);
    return it == data_->end() ? std::optional<KvRecord>() : std::optional<KvRecord>(it->second);
  }
  Status put(const std::string& key, const KvRecord& record) override {
    (*data_)[key] = record;
    return Status();
  }
  Status erase(const std::string& key) override {
    data_->erase(key);
    return Status();
  }
  Result<std::vector<std::string>> keys_with_prefix(const std::string& prefix,
                                                    size_t limit) override {
    std::vector<std::string> keys;
    for (auto it = data_->lower_bound(prefix); it != data_->end() && keys.size() < limit &&
                                               std::string_view(it->first).starts_with(prefix);
         ++it)
      keys.push_back(it->first);
    return keys;
  }

 private:
  std::map<std::string, KvRecord, std::less<>>* data_;
};

}  // namespace

Status MemoryKv::apply(std::span<const Command> commands, std::vector<ApplyResult>* results) {
  if (commands.empty())
    return Status();
  std::vector<KvEvent> events;
  {
    std::unique_lock lock(mu_);
    MapTable table(&data_);
    const KvEffects effects{&hash_, &expiry_, &events};
    for (const Command& cmd : commands) {
      auto result = apply_kv(cmd, table, effects);
      if (!result.ok())
        return result.status();  // the map cannot fail
      results->push_back(std::move(result).value());
      applied_index_ = cmd.index;
      applied_term_ = cmd.term;
    }
  }
  if (observer_ != nullptr)
    observer_->applied(std::move(events), commands.back().index);
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

Result<std::optional<KvRecord>> MemoryKv::get(std::string_view key) const {
  std::shared_lock lock(mu_);
  auto it = data_.find(key);
  if (it == data_.end())
    return std::optional<KvRecord>();
  return std::optional<KvRecord>(it->second);
}

Result<KvListing> MemoryKv::list(std::string_view prefix, std::string_view after, size_t limit,
                                 size_t max_bytes, bool keys_only, uint64_t now_ms) const {
  std::shared_lock lock(mu_);
  KvListing page;
  page.index = applied_index_;
  size_t bytes = 0;
  auto it = after.empty() || after < prefix ? data_.lower_bound(prefix) : data_.upper_bound(after);
  for (; it != data_.end() && std::string_view(it->first).starts_with(prefix); ++it) {
    if (page.entries.size() >= limit || (bytes >= max_bytes && !page.entries.empty())) {
      page.truncated = true;
      break;
    }
    if (it->second.expired_at(now_ms))
      continue;
    KvRecord record = it->second;
    if (keys_only)
      record.value.clear();
    bytes += it->first.size() + record.value.size();
    page.entries.emplace_back(it->first, std::move(record));
  }
  return page;
}

Result<std::unique_ptr<Snapshot>> MemoryKv::snapshot() {
  std::shared_lock lock(mu_);
  std::string body;
  put_u32(&body, kSnapshotMagic);
  put_u64(&body, applied_index_);
  put_u64(&body, applied_term_);
  put_u64(&body, data_.size());
  for (const auto& [key, record] : data_) {
    put_bytes(&body, key);
    put_bytes(&body, encode_kv_record(record));
  }
  return std::unique_ptr<Snapshot>(
      new MemorySnapshot(applied_index_, applied_term_, std::move(body)));
}

Status MemoryKv::restore(storage::Env* env, const std::string& dir, raft::Index index,
                         raft::Term term) {
  return load(env, dir, index, term, true);
}

Status MemoryKv::replace(storage::Env* env, const std::string& dir, raft::Index index,
                         raft::Term term) {
  // The file comes from an operator: one that is missing or does not parse is refused, as on
  // every node, and nothing changed.
  Status s = load(env, dir, index, term, false);
  if (s.code() == Status::Code::kCorruption || s.code() == Status::Code::kNotFound)
    return Status::invalid_argument(s.message());
  return s;
}

Status MemoryKv::load(storage::Env* env, const std::string& dir, raft::Index index, raft::Term term,
                      bool files_at_index) {
  auto file = env->read_file(dir + kSnapshotFile);
  if (!file.ok())
    return file.status();
  const std::string_view in = *file;
  if (in.size() < 4 || crc32(in.substr(0, in.size() - 4)) != decode_u32(in.data() + in.size() - 4))
    return Status::corruption("memory snapshot in " + dir + ": checksum mismatch");
  Reader r(in.substr(0, in.size() - 4));
  const uint32_t magic = r.u32();
  if (magic != kSnapshotMagic && magic != kLegacySnapshotMagic)
    return Status::corruption("memory snapshot in " + dir + ": not a memory snapshot");
  const raft::Index file_index = r.u64();
  const raft::Term file_term = r.u64();
  if (files_at_index && (file_index != index || file_term != term)) {
    return Status::corruption("memory snapshot in " + dir + " covers " +
                              std::to_string(file_index) + ", expected " + std::to_string(index));
  }
  std::map<std::string, KvRecord, std::less<>> data;
  uint64_t hash = 0;
  const uint64_t count = r.u64();
  for (uint64_t i = 0; i < count && r.ok(); ++i) {
    std::string key(r.bytes());
    const std::string_view stored = r.bytes();
    KvRecord record;
    if (magic == kLegacySnapshotMagic) {
      record.value = std::string(stored);
    } else if (r.ok()) {
      auto decoded = decode_kv_record(stored);
      if (!decoded.ok())
        return Status::corruption("memory snapshot in " + dir + ": " + decoded.status().message());
      record = std::move(decoded).value();
    }
    hash += kv_record_hash(key, record);
    data[std::move(key)] = std::move(record);
  }
  if (!r.done())
    return Status::corruption("memory snapshot in " + dir + ": malformed");
  {
    std::unique_lock lock(mu_);
    data_ = std::move(data);
    hash_ = hash;
    applied_index_ = index;
    applied_term_ = term;
    expiry_.clear();
    for (const auto& [key, record] : data_)
      expiry_.update(key, nullptr, &record);
  }
  if (observer_ != nullptr)
    observer_->restored(index);
  return Status();
}

}  // namespace raftnginx::fsm
