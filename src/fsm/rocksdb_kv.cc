#include "fsm/rocksdb_kv.h"

#include <rocksdb/sst_file_writer.h>
#include <rocksdb/write_batch.h>

#include <mutex>
#include <unordered_map>

#include "raftnginx/pace.h"
#include "util/coding.h"

namespace raftnginx::fsm {
namespace {

constexpr size_t kData = 0;
constexpr size_t kMeta = 1;
const char* const kFamilyNames[] = {rocksdb::kDefaultColumnFamilyName.c_str(), "meta"};
constexpr const char* kAppliedKey = "applied";
constexpr const char* kHashKey = "state_hash";

Status from_rocksdb(const rocksdb::Status& s, const std::string& what) {
  if (s.ok())
    return Status();
  if (s.IsCorruption())
    return Status::corruption(what + ": " + s.ToString());
  return Status::io_error(what + ": " + s.ToString());
}

std::string encode_applied(raft::Index index, raft::Term term) {
  std::string out;
  put_u64(&out, index);
  put_u64(&out, term);
  return out;
}

class RocksDbSnapshot final : public Snapshot {
 public:
  RocksDbSnapshot(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                  raft::Index index, raft::Term term)
      : db_(db),
        families_(std::move(families)),
        snap_(db->GetSnapshot()),
        index_(index),
        term_(term) {}
  ~RocksDbSnapshot() override { db_->ReleaseSnapshot(snap_); }

  raft::Index index() const override { return index_; }
  raft::Term term() const override { return term_; }

  Status write_to(storage::Env*, const std::string& dir) override {
    rocksdb::ReadOptions ro;
    ro.snapshot = snap_;
    ro.fill_cache = false;
    for (size_t f = 0; f < families_.size(); ++f) {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, families_[f]));
      it->SeekToFirst();
      if (!it->Valid()) {
        if (Status s = from_rocksdb(it->status(), "snapshot scan"); !s.ok())
          return s;
        continue;  // an empty family has no file
      }
      rocksdb::SstFileWriter writer{rocksdb::EnvOptions{}, rocksdb::Options{}};
      const std::string path = dir + "/" + kFamilyNames[f] + ".sst";
      if (Status s = from_rocksdb(writer.Open(path), "open " + path); !s.ok())
        return s;
      for (; it->Valid(); it->Next()) {
        if (Status s = from_rocksdb(writer.Put(it->key(), it->value()), "write " + path); !s.ok())
          return s;
      }
      if (Status s = from_rocksdb(it->status(), "snapshot scan"); !s.ok())
        return s;
      if (Status s = from_rocksdb(writer.Finish(), "finish " + path); !s.ok())
        return s;
    }
    return Status();
  }

 private:
  rocksdb::DB* db_;
  std::vector<rocksdb::ColumnFamilyHandle*> families_;
  const rocksdb::Snapshot* snap_;
  raft::Index index_;
  raft::Term term_;
};

}  // namespace

RocksDbKv::~RocksDbKv() {
  for (auto* h : families_)
    (void)db_->DestroyColumnFamilyHandle(h);
  if (db_)
    (void)db_->Close();
}

Result<std::unique_ptr<RocksDbKv>> RocksDbKv::open(const std::string& dir,
                                                   const RocksDbOptions& rocks_options) {
  std::unique_ptr<RocksDbKv> kv(new RocksDbKv(dir, rocks_options));
  rocksdb::Options options;
  options.max_open_files = rocks_options.max_open_files;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.IncreaseParallelism(2);
  options.atomic_flush = true;  // the families stay consistent with each other without a WAL
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const char* name : kFamilyNames)
    families.emplace_back(name, rocksdb::ColumnFamilyOptions(options));
  rocksdb::DB* db = nullptr;
  if (Status s = from_rocksdb(rocksdb::DB::Open(options, dir, families, &kv->families_, &db),
                              "open rocksdb in " + dir);
      !s.ok())
    return s;
  kv->db_.reset(db);
  if (Status s = kv->load_meta(); !s.ok())
    return s;
  return kv;
}

Status RocksDbKv::load_meta() {
  std::string applied;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), families_[kMeta], kAppliedKey, &applied);
  if (s.ok()) {
    if (applied.size() != 16)
      return Status::corruption("rocksdb applied index record has " +
                                std::to_string(applied.size()) + " bytes");
    applied_index_ = decode_u64(applied.data());
    applied_term_ = decode_u64(applied.data() + 8);
  } else if (s.IsNotFound()) {
    applied_index_ = 0;
    applied_term_ = 0;
  } else {
    return from_rocksdb(s, "read applied index");
  }
  std::string hash;
  s = db_->Get(rocksdb::ReadOptions(), families_[kMeta], kHashKey, &hash);
  if (s.ok() && hash.size() == 8) {
    hash_ = decode_u64(hash.data());
    return Status();
  }
  if (!s.ok() && !s.IsNotFound())
    return from_rocksdb(s, "read state hash");
  // A store from before state hashes (or a snapshot of one): computed once, and kept.
  auto computed = hash_of_pairs(rocksdb::ReadOptions(), [](uint64_t) { return true; });
  if (!computed.ok())
    return computed.status();
  hash_ = *computed;
  std::string encoded;
  put_u64(&encoded, *computed);
  return from_rocksdb(db_->Put(rocksdb::WriteOptions(), families_[kMeta], kHashKey, encoded),
                      "write state hash");
}

Result<uint64_t> RocksDbKv::hash_of_pairs(const rocksdb::ReadOptions& read,
                                          const std::function<bool(uint64_t)>& pace) const {
  uint64_t sum = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, families_[kData]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice key = it->key();
    const rocksdb::Slice value = it->value();
    sum += kv_pair_hash(std::string_view(key.data(), key.size()),
                        std::string_view(value.data(), value.size()));
    if (!pace(key.size() + value.size()))
      return Status::unavailable("interrupted");
  }
  if (Status s = from_rocksdb(it->status(), "rocksdb scan"); !s.ok())
    return s;
  return sum;
}

Status RocksDbKv::scrub(Pace& pace) {
  std::shared_lock lock(families_mu_);
  // The pairs and the hash recorded with them, from one RocksDB snapshot: the same point of the
  // log, while apply goes on. A whole scan reads every data block of every live file, and
  // RocksDB checks each block's checksum as it reads it: that is the files' check, paced
  // (DB::VerifyChecksum would hold the lock at full speed while a restore waits).
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  rocksdb::ReadOptions read;
  read.snapshot = snap;
  read.fill_cache = false;
  read.verify_checksums = true;
  std::string recorded;
  rocksdb::Status got = db_->Get(read, families_[kMeta], kHashKey, &recorded);
  auto sum = hash_of_pairs(
      read, [&](uint64_t bytes) { return pace.consumed(bytes) && !restoring_.load(); });
  db_->ReleaseSnapshot(snap);
  if (!sum.ok())
    return sum.status().code() == Status::Code::kUnavailable ? Status() : sum.status();
  if (!got.ok() || recorded.size() != 8)
    return from_rocksdb(got, "read state hash");
  if (*sum != decode_u64(recorded.data())) {
    return Status::corruption("the pairs stored in " + dir_ +
                              " no longer match the state they were written as: values changed "
                              "on disk since they were applied");
  }
  return Status();
}

void RocksDbKv::flush_if_due(size_t applied) {
  unflushed_ += applied;
  const auto now = std::chrono::steady_clock::now();
  if (unflushed_ < options_.flush_entries && now - last_flush_ < options_.flush_interval)
    return;
  rocksdb::FlushOptions flush;
  flush.wait = false;  // the applied index is durable once it lands; apply need not wait
  flush.allow_write_stall = true;
  (void)db_->Flush(flush, families_);  // a flush that fails is retried at the next interval
  unflushed_ = 0;
  last_flush_ = now;
}

Status RocksDbKv::apply(std::span<const Command> commands, std::vector<ApplyResult>* results) {
  if (commands.empty())
    return Status();
  std::shared_lock lock(families_mu_);
  rocksdb::WriteBatch batch;
  // The values this batch replaces: what the batch wrote before, or what is stored.
  std::unordered_map<std::string, std::optional<std::string>> current;
  Status read_failed;
  const auto value_of = [&](const std::string& key) -> std::optional<std::string>& {
    auto [it, inserted] = current.try_emplace(key);
    if (inserted) {
      std::string stored;
      rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), families_[kData], key, &stored);
      if (s.ok())
        it->second = std::move(stored);
      else if (!s.IsNotFound())
        read_failed = from_rocksdb(s, "rocksdb read before write");
    }
    return it->second;
  };
  uint64_t hash = hash_.load();
  for (const Command& cmd : commands) {
    results->push_back(apply_kv_command(
        cmd,
        [&](const std::string& key, const std::string& value) {
          std::optional<std::string>& old = value_of(key);
          if (old)
            hash -= kv_pair_hash(key, *old);
          hash += kv_pair_hash(key, value);
          old = value;
          batch.Put(families_[kData], key, value);
        },
        [&](const std::string& key) {
          std::optional<std::string>& old = value_of(key);
          if (old)
            hash -= kv_pair_hash(key, *old);
          old.reset();
          batch.Delete(families_[kData], key);
        }));
  }
  if (!read_failed.ok())
    return read_failed;
  const Command& last = commands.back();
  batch.Put(families_[kMeta], kAppliedKey, encode_applied(last.index, last.term));
  std::string encoded_hash;
  put_u64(&encoded_hash, hash);
  batch.Put(families_[kMeta], kHashKey, encoded_hash);
  rocksdb::WriteOptions write_options;
  write_options.disableWAL = true;
  if (Status s = from_rocksdb(db_->Write(write_options, &batch), "rocksdb write"); !s.ok())
    return s;
  applied_index_ = last.index;
  applied_term_ = last.term;
  hash_ = hash;
  flush_if_due(commands.size());
  return Status();
}

raft::Index RocksDbKv::applied_index() const {
  return applied_index_;
}
raft::Term RocksDbKv::applied_term() const {
  return applied_term_;
}

Result<std::optional<std::string>> RocksDbKv::get(std::string_view key) const {
  std::shared_lock lock(families_mu_);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), families_[kData],
                               rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound())
    return std::optional<std::string>();
  if (!s.ok())
    return from_rocksdb(s, "rocksdb get");
  return std::optional<std::string>(std::move(value));
}

Result<std::unique_ptr<Snapshot>> RocksDbKv::snapshot() {
  std::shared_lock lock(families_mu_);
  return std::unique_ptr<Snapshot>(
      new RocksDbSnapshot(db_.get(), families_, applied_index_, applied_term_));
}

Status RocksDbKv::restore(storage::Env* env, const std::string& dir, raft::Index index,
                          raft::Term term) {
  restoring_ = true;
  std::unique_lock lock(families_mu_);
  restoring_ = false;
  for (size_t f = 0; f < families_.size(); ++f) {
    // Emptying a family in one step: drop it (the default family cannot be dropped, so its keys
    // are deleted by range over everything).
    if (f == kData) {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), families_[f]));
      it->SeekToFirst();
      if (it->Valid()) {
        std::string first = it->key().ToString();
        it->SeekToLast();
        std::string last = it->key().ToString() + '\0';
        if (Status s = from_rocksdb(
                db_->DeleteRange(rocksdb::WriteOptions(), families_[f], first, last), "clear data");
            !s.ok())
          return s;
      }
    } else {
      if (Status s = from_rocksdb(db_->DropColumnFamily(families_[f]), "drop family"); !s.ok())
        return s;
      (void)db_->DestroyColumnFamilyHandle(families_[f]);
      rocksdb::ColumnFamilyHandle* fresh = nullptr;
      if (Status s = from_rocksdb(
              db_->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), kFamilyNames[f], &fresh),
              "create family");
          !s.ok())
        return s;
      families_[f] = fresh;
    }
    const std::string path = dir + "/" + kFamilyNames[f] + ".sst";
    if (!env->exists(path))
      continue;
    rocksdb::IngestExternalFileOptions ingest;
    ingest.move_files = false;
    if (Status s =
            from_rocksdb(db_->IngestExternalFile(families_[f], {path}, ingest), "ingest " + path);
        !s.ok())
      return s;
  }
  if (Status s = load_meta(); !s.ok())
    return s;
  if (applied_index_ != index || applied_term_ != term) {
    return Status::corruption("rocksdb snapshot in " + dir + " covers " +
                              std::to_string(applied_index_.load()) + ", expected " +
                              std::to_string(index));
  }
  return Status();
}

}  // namespace raftnginx::fsm
