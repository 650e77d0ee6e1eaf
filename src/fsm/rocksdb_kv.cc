#include "fsm/rocksdb_kv.h"

#include <rocksdb/sst_file_writer.h>
#include <rocksdb/write_batch.h>

#include <mutex>

#include "util/coding.h"

namespace raftnginx::fsm {
namespace {

constexpr size_t kData = 0;
constexpr size_t kMeta = 1;
const char* const kFamilyNames[] = {rocksdb::kDefaultColumnFamilyName.c_str(), "meta"};
constexpr const char* kAppliedKey = "applied";

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

Result<std::unique_ptr<RocksDbKv>> RocksDbKv::open(const std::string& dir, int max_open_files) {
  std::unique_ptr<RocksDbKv> kv(new RocksDbKv(dir));
  rocksdb::Options options;
  options.max_open_files = max_open_files;
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
  return Status();
}

Status RocksDbKv::apply(std::span<const Command> commands, std::vector<ApplyResult>* results) {
  if (commands.empty())
    return Status();
  std::shared_lock lock(families_mu_);
  rocksdb::WriteBatch batch;
  for (const Command& cmd : commands) {
    results->push_back(apply_kv_command(
        cmd,
        [&](const std::string& key, const std::string& value) {
          batch.Put(families_[kData], key, value);
        },
        [&](const std::string& key) { batch.Delete(families_[kData], key); }));
  }
  const Command& last = commands.back();
  batch.Put(families_[kMeta], kAppliedKey, encode_applied(last.index, last.term));
  rocksdb::WriteOptions write_options;
  write_options.disableWAL = true;
  if (Status s = from_rocksdb(db_->Write(write_options, &batch), "rocksdb write"); !s.ok())
    return s;
  applied_index_ = last.index;
  applied_term_ = last.term;
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
  std::unique_lock lock(families_mu_);
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
