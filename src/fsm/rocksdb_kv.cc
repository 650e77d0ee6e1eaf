#include "fsm/rocksdb_kv.h"

#include <rocksdb/sst_file_reader.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/utilities/write_batch_with_index.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

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
constexpr const char* kFormatKey = "format";
// Present while restore() or replace() changes the whole state: a store opened with it was cut
// short, and is emptied (its applied index then reads 0: the node restores a snapshot and
// replays the log).
constexpr const char* kReplacingKey = "replacing";
constexpr const char* kFormat = "records-1";  // values are records (kv_command.h)

rocksdb::Slice slice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}

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
  std::string mark;
  const rocksdb::Status replacing =
      db->Get(rocksdb::ReadOptions(), kv->families_[kMeta], kReplacingKey, &mark);
  if (!replacing.ok() && !replacing.IsNotFound())
    return from_rocksdb(replacing, "read the replacement mark");
  if (replacing.ok()) {
    spdlog::warn("rocksdb in {}: a restore was cut short; the store starts empty", dir);
    for (size_t f : {kMeta, kData}) {
      if (Status s = kv->empty_family(f); !s.ok())
        return s;
    }
  }
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
  std::string format;
  s = db_->Get(rocksdb::ReadOptions(), families_[kMeta], kFormatKey, &format);
  if (s.IsNotFound()) {
    if (Status upgraded = upgrade_values(); !upgraded.ok())
      return upgraded;
  } else if (!s.ok()) {
    return from_rocksdb(s, "read format");
  } else if (format != kFormat) {
    return Status::not_supported("the rocksdb store in " + dir_ + " has format '" + format +
                                 "', which this release does not know");
  }
  // One scan: the deadlines always, and the hash if none is recorded.
  expiry_.clear();
  auto computed = hash_of_pairs(
      rocksdb::ReadOptions(), [](uint64_t) { return true; }, &expiry_);
  if (!computed.ok())
    return computed.status();
  std::string hash;
  s = db_->Get(rocksdb::ReadOptions(), families_[kMeta], kHashKey, &hash);
  if (s.ok() && hash.size() == 8) {
    hash_ = decode_u64(hash.data());
    return Status();
  }
  if (!s.ok() && !s.IsNotFound())
    return from_rocksdb(s, "read state hash");
  // A store from before state hashes (or a snapshot of one): computed, and kept.
  hash_ = *computed;
  std::string encoded;
  put_u64(&encoded, *computed);
  return from_rocksdb(db_->Put(rocksdb::WriteOptions(), families_[kMeta], kHashKey, encoded),
                      "write state hash");
}

Status RocksDbKv::upgrade_values() {
  // One batch with the format mark, so that a crash halfway leaves the old format whole.
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), families_[kData]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    KvRecord record;
    record.value = it->value().ToString();
    batch.Put(families_[kData], it->key(), encode_kv_record(record));
  }
  if (Status s = from_rocksdb(it->status(), "rocksdb scan"); !s.ok())
    return s;
  batch.Put(families_[kMeta], kFormatKey, kFormat);
  return from_rocksdb(db_->Write(rocksdb::WriteOptions(), &batch), "rewrite values as records");
}

Result<uint64_t> RocksDbKv::hash_of_pairs(const rocksdb::ReadOptions& read,
                                          const std::function<bool(uint64_t)>& pace,
                                          ExpiryIndex* deadlines) const {
  uint64_t sum = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, families_[kData]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice key = it->key();
    const rocksdb::Slice value = it->value();
    const std::string_view name(key.data(), key.size());
    auto record = decode_kv_record(std::string_view(value.data(), value.size()));
    if (!record.ok())
      return Status::corruption("the record of key '" + std::string(name) + "' in " + dir_ +
                                " is malformed");
    sum += kv_record_hash(name, *record);
    if (deadlines != nullptr)
      deadlines->update(std::string(name), nullptr, &*record);
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

namespace {

// The store as a batch sees it: the indexed batch over the database.
class BatchTable final : public KvTable {
 public:
  BatchTable(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* data,
             rocksdb::WriteBatchWithIndex* batch)
      : db_(db), data_(data), batch_(batch) {}

  Result<std::optional<KvRecord>> find(const std::string& key) override {
    std::string stored;
    rocksdb::Status s = batch_->GetFromBatchAndDB(db_, rocksdb::ReadOptions(), data_, key, &stored);
    if (s.IsNotFound())
      return std::optional<KvRecord>();
    if (!s.ok())
      return from_rocksdb(s, "rocksdb read before write");
    auto record = decode_kv_record(stored);
    if (!record.ok())
      return Status::corruption("the record of key '" + key + "' is malformed");
    return std::optional<KvRecord>(std::move(record).value());
  }
  Status put(const std::string& key, const KvRecord& record) override {
    return from_rocksdb(batch_->Put(data_, key, encode_kv_record(record)), "rocksdb batch");
  }
  Status erase(const std::string& key) override {
    return from_rocksdb(batch_->Delete(data_, key), "rocksdb batch");
  }
  Result<std::vector<std::string>> keys_with_prefix(const std::string& prefix,
                                                    size_t limit) override {
    std::unique_ptr<rocksdb::Iterator> it(
        batch_->NewIteratorWithBase(data_, db_->NewIterator(rocksdb::ReadOptions(), data_)));
    std::vector<std::string> keys;
    for (it->Seek(prefix); it->Valid() && keys.size() < limit && it->key().starts_with(prefix);
         it->Next())
      keys.push_back(it->key().ToString());
    if (Status s = from_rocksdb(it->status(), "rocksdb scan"); !s.ok())
      return s;
    return keys;
  }

 private:
  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* data_;
  rocksdb::WriteBatchWithIndex* batch_;
};

}  // namespace

Status RocksDbKv::apply(std::span<const Command> commands, std::vector<ApplyResult>* results) {
  if (commands.empty())
    return Status();
  std::vector<KvEvent> events;
  {
    std::shared_lock lock(families_mu_);
    // Keys overwrite in the index, so that a key written twice in a batch is read back once.
    rocksdb::WriteBatchWithIndex batch(rocksdb::BytewiseComparator(), 0, true);
    BatchTable table(db_.get(), families_[kData], &batch);
    uint64_t hash = hash_.load();
    const KvEffects effects{&hash, &expiry_, &events};
    for (const Command& cmd : commands) {
      auto result = apply_kv(cmd, table, effects);
      if (!result.ok())
        return result.status();
      results->push_back(std::move(result).value());
    }
    const Command& last = commands.back();
    std::string encoded_hash;
    put_u64(&encoded_hash, hash);
    if (Status s = from_rocksdb(
            batch.Put(families_[kMeta], kAppliedKey, encode_applied(last.index, last.term)),
            "rocksdb batch");
        !s.ok())
      return s;
    if (Status s =
            from_rocksdb(batch.Put(families_[kMeta], kHashKey, encoded_hash), "rocksdb batch");
        !s.ok())
      return s;
    rocksdb::WriteOptions write_options;
    write_options.disableWAL = true;
    if (Status s = from_rocksdb(db_->Write(write_options, batch.GetWriteBatch()), "rocksdb write");
        !s.ok())
      return s;
    applied_index_ = last.index;
    applied_term_ = last.term;
    hash_ = hash;
    flush_if_due(commands.size());
  }
  if (observer_ != nullptr)
    observer_->applied(std::move(events), commands.back().index);
  return Status();
}

raft::Index RocksDbKv::applied_index() const {
  return applied_index_;
}
raft::Term RocksDbKv::applied_term() const {
  return applied_term_;
}

Result<std::optional<KvRecord>> RocksDbKv::get(std::string_view key) const {
  std::shared_lock lock(families_mu_);
  rocksdb::PinnableSlice stored;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), families_[kData], slice(key), &stored);
  if (s.IsNotFound())
    return std::optional<KvRecord>();
  if (!s.ok())
    return from_rocksdb(s, "rocksdb get");
  auto record = decode_kv_record(std::string_view(stored.data(), stored.size()));
  if (!record.ok())
    return Status::corruption("the record of key '" + std::string(key) + "' is malformed");
  return std::optional<KvRecord>(std::move(record).value());
}

Result<KvListing> RocksDbKv::list(std::string_view prefix, std::string_view after, size_t limit,
                                  size_t max_bytes, bool keys_only, uint64_t now_ms) const {
  std::shared_lock lock(families_mu_);
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  rocksdb::ReadOptions read;
  read.snapshot = snap;
  KvListing page;
  std::string applied;
  const rocksdb::Status got = db_->Get(read, families_[kMeta], kAppliedKey, &applied);
  Status status = got.IsNotFound() ? Status() : from_rocksdb(got, "read applied index");
  if (got.ok() && applied.size() == 16)
    page.index = decode_u64(applied.data());
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, families_[kData]));
  if (after.empty() || after < prefix) {
    it->Seek(slice(prefix));
  } else {
    it->Seek(slice(after));
    if (it->Valid() && it->key() == slice(after))
      it->Next();
  }
  size_t bytes = 0;
  for (; status.ok() && it->Valid() && it->key().starts_with(slice(prefix)); it->Next()) {
    if (page.entries.size() >= limit || (bytes >= max_bytes && !page.entries.empty())) {
      page.truncated = true;
      break;
    }
    const rocksdb::Slice value = it->value();
    auto record = decode_kv_record(std::string_view(value.data(), value.size()));
    if (!record.ok()) {
      status = Status::corruption("the record of key '" + it->key().ToString() + "' is malformed");
      break;
    }
    KvRecord kept = std::move(record).value();
    if (kept.expired_at(now_ms))
      continue;
    if (keys_only)
      kept.value.clear();
    bytes += it->key().size() + kept.value.size();
    page.entries.emplace_back(it->key().ToString(), std::move(kept));
  }
  if (status.ok())
    status = from_rocksdb(it->status(), "rocksdb scan");
  it.reset();
  db_->ReleaseSnapshot(snap);
  if (!status.ok())
    return status;
  return page;
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
  if (Status s = begin_replacing(); !s.ok())
    return s;
  for (size_t f : {kData, kMeta}) {
    if (Status s = ingest_family(env, dir, f); !s.ok())
      return s;
  }
  rocksdb::WriteOptions synced;
  synced.sync = true;
  if (Status s =
          from_rocksdb(db_->Delete(synced, families_[kMeta], kReplacingKey), "end the restore");
      !s.ok())
    return s;
  if (Status s = load_meta(); !s.ok())
    return s;
  if (applied_index_ != index || applied_term_ != term) {
    return Status::corruption("rocksdb snapshot in " + dir + " covers " +
                              std::to_string(applied_index_.load()) + ", expected " +
                              std::to_string(index));
  }
  lock.unlock();
  if (observer_ != nullptr)
    observer_->restored(index);
  return Status();
}

Status RocksDbKv::replace(storage::Env* env, const std::string& dir, raft::Index index,
                          raft::Term term) {
  // The files come from an operator: each is read through before anything changes, and one
  // that is damaged (or holds a record that does not decode) is refused, as on every node. A
  // failure to read them here (I/O) is this node's and is returned as such.
  std::string format;
  for (size_t f : {kData, kMeta}) {
    const std::string path = dir + "/" + kFamilyNames[f] + ".sst";
    if (!env->exists(path))
      continue;
    const std::string what = "the backup's " + std::string(kFamilyNames[f]) + ".sst: ";
    auto refused = [&](const rocksdb::Status& s) {
      return s.IsCorruption() || s.IsInvalidArgument()
                 ? Status::invalid_argument(what + s.ToString())
                 : from_rocksdb(s, what);
    };
    rocksdb::SstFileReader reader{rocksdb::Options{}};
    rocksdb::Status checked = reader.Open(path);
    if (checked.ok())
      checked = reader.VerifyChecksum();
    if (!checked.ok())
      return refused(checked);
    std::unique_ptr<rocksdb::Iterator> it(reader.NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const rocksdb::Slice value = it->value();
      if (f == kMeta && it->key() == rocksdb::Slice(kFormatKey))
        format = value.ToString();
      if (f == kData && !decode_kv_record(std::string_view(value.data(), value.size())).ok())
        return Status::invalid_argument(what + "a record does not decode");
    }
    if (!it->status().ok())
      return refused(it->status());
  }
  if (format != kFormat)
    return Status::invalid_argument("a rocksdb backup of format '" + format +
                                    "' cannot replace the state in place: restore it into a "
                                    "new cluster");
  restoring_ = true;
  std::unique_lock lock(families_mu_);
  restoring_ = false;
  if (Status s = begin_replacing(); !s.ok())
    return s;
  if (Status s = ingest_family(env, dir, kData); !s.ok())
    return s;
  // The files' own meta (their applied index) is not taken: `index` is, with the new state's
  // hash, in the batch that ends the replacement.
  auto hash = hash_of_pairs(rocksdb::ReadOptions(), [](uint64_t) { return true; });
  if (!hash.ok())
    return hash.status();
  std::string encoded_hash;
  put_u64(&encoded_hash, *hash);
  rocksdb::WriteBatch batch;
  for (const auto& [key, value] :
       {std::pair<const char*, std::string>{kAppliedKey, encode_applied(index, term)},
        {kFormatKey, kFormat},
        {kHashKey, encoded_hash}}) {
    if (Status s = from_rocksdb(batch.Put(families_[kMeta], key, value), "rocksdb batch"); !s.ok())
      return s;
  }
  if (Status s = from_rocksdb(batch.Delete(families_[kMeta], kReplacingKey), "rocksdb batch");
      !s.ok())
    return s;
  rocksdb::WriteOptions synced;
  synced.sync = true;
  if (Status s = from_rocksdb(db_->Write(synced, &batch), "write the replaced state's index");
      !s.ok())
    return s;
  if (Status s = load_meta(); !s.ok())
    return s;
  lock.unlock();
  if (observer_ != nullptr)
    observer_->restored(index);
  return Status();
}

Status RocksDbKv::begin_replacing() {
  for (size_t f : {kMeta, kData}) {
    if (Status s = empty_family(f); !s.ok())
      return s;
    if (f == kMeta) {  // the mark, durable before the data changes
      rocksdb::WriteOptions synced;
      synced.sync = true;
      if (Status s = from_rocksdb(db_->Put(synced, families_[kMeta], kReplacingKey, ""),
                                  "mark the state as being replaced");
          !s.ok())
        return s;
    }
  }
  return Status();
}

Status RocksDbKv::empty_family(size_t f) {
  // In one step: drop it (the default family cannot be dropped, so its keys are deleted by
  // range over everything).
  if (f == kData) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), families_[f]));
    it->SeekToFirst();
    if (!it->Valid())
      return from_rocksdb(it->status(), "scan data");
    std::string first = it->key().ToString();
    it->SeekToLast();
    std::string last = it->key().ToString() + '\0';
    return from_rocksdb(db_->DeleteRange(rocksdb::WriteOptions(), families_[f], first, last),
                        "clear data");
  }
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
  return Status();
}

Status RocksDbKv::ingest_family(storage::Env* env, const std::string& dir, size_t f) {
  const std::string path = dir + "/" + kFamilyNames[f] + ".sst";
  if (!env->exists(path))
    return Status();
  rocksdb::IngestExternalFileOptions ingest;
  ingest.move_files = false;
  return from_rocksdb(db_->IngestExternalFile(families_[f], {path}, ingest), "ingest " + path);
}

}  // namespace raftnginx::fsm
