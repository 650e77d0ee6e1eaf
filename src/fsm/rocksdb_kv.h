// RocksDbKv: the key-value store on RocksDB, the default backend.
//
// Column families: "default" holds the keys and their records (kv_command.h: the value and its
// revisions), "meta" the applied index and term, the state hash and the format. Each apply()
// batch is one WriteBatch across both (indexed, so that a command reads the writes of the ones
// before it in the batch), so the effects and the applied index are durable together (the
// exactly-once contract of state_machine.h). RocksDB's WAL is off: the raft log is already the
// write-ahead log, so a second one would only cost a write per batch. After a crash RocksDB holds
// the batches its last flush reached, the families flushed together (atomic_flush), and the node
// replays the log after the applied index that survived, or restores the latest snapshot if the log
// no longer reaches back that far. Closing the store flushes, so a clean restart re-applies
// nothing.
//
// So that a crash re-applies little (the log after the applied index that survived), apply()
// starts a flush every `flush_entries` commands or `flush_interval`, whichever comes first,
// without waiting for it: after kill -9 at most about one interval's commands are applied again.
//
// The state hash (state_machine.h) is kept in "meta" with the applied index, in the same batch:
// each write reads the value it replaces to take that pair's hash out. scrub() verifies every
// table file's checksums (RocksDB's own) and re-reads every pair from a RocksDB snapshot, to
// find values changed on disk behind RocksDB's back.
//
// A snapshot is a RocksDB snapshot (free to take); write_to() streams its column families
// into SST files while apply goes on; restore() replaces the families with them. A listing reads
// one RocksDB snapshot too, with the applied index recorded in it.
//
// Format: "meta" records it. A store (or a snapshot) from before revisions held bare values: it
// is rewritten once, when opened (or restored), as records without revisions, which hash as the
// bare pairs did. The deadlines of keys with a TTL are kept in memory, read when the store opens
// or restores.
#pragma once

#include <rocksdb/db.h>

#include <chrono>
#include <functional>
#include <memory>
#include <shared_mutex>

#include "fsm/kv_apply.h"
#include "fsm/kv_store.h"
#include "util/defaults.h"

namespace raftnginx::fsm {

struct RocksDbOptions {
  int max_open_files = -1;  // the most table files RocksDB keeps open (-1: no limit)
  uint64_t flush_entries = defaults::kFsmFlushEntries;
  std::chrono::milliseconds flush_interval = defaults::kFsmFlushInterval;
};

class RocksDbKv final : public KvStore {
 public:
  // Opens (or creates) the store in `dir`.
  static Result<std::unique_ptr<RocksDbKv>> open(const std::string& dir,
                                                 const RocksDbOptions& options = {});
  ~RocksDbKv() override;

  std::string name() const override { return "rocksdb"; }
  Status apply(std::span<const Command> commands, std::vector<ApplyResult>* results) override;
  raft::Index applied_index() const override;
  raft::Term applied_term() const override;
  Result<std::unique_ptr<Snapshot>> snapshot() override;
  Status restore(storage::Env* env, const std::string& dir, raft::Index index,
                 raft::Term term) override;
  Status replace(storage::Env* env, const std::string& dir, raft::Index index,
                 raft::Term term) override;
  Result<std::optional<KvRecord>> get(std::string_view key) const override;
  Result<KvListing> list(std::string_view prefix, std::string_view after, size_t limit,
                         size_t max_bytes, bool keys_only, uint64_t now_ms) const override;
  std::vector<KvDue> due(uint64_t now_ms, size_t limit) const override {
    return expiry_.due(now_ms, limit);
  }
  void set_observer(KvObserver* observer) override { observer_ = observer; }
  std::optional<uint64_t> state_hash() const override { return hash_.load(); }
  Status scrub(Pace& pace) override;

 private:
  RocksDbKv(std::string dir, const RocksDbOptions& options)
      : dir_(std::move(dir)), options_(options) {}
  // Reads the applied index, the format (rewriting bare values as records) and the state hash,
  // and rebuilds the deadlines.
  Status load_meta();
  Status upgrade_values();
  // The first step of restore() and replace(): "meta" emptied but for a durable mark (so that
  // the applied index reads 0 until the new state is whole, and a store reopened before then is
  // known to be cut short), then the data. REQUIRES: families_mu_ held exclusively, as below.
  Status begin_replacing();
  Status empty_family(size_t f);
  // Ingests family `f`'s file from the snapshot in `dir`, if it holds one.
  Status ingest_family(storage::Env* env, const std::string& dir, size_t f);
  // The sum of every record's hash, read through `read` (a snapshot, or the current state);
  // `pace` is called with each pair's size and may stop the scan by returning false. Rebuilds
  // the deadlines as well if `deadlines` is given.
  Result<uint64_t> hash_of_pairs(const rocksdb::ReadOptions& read,
                                 const std::function<bool(uint64_t)>& pace,
                                 ExpiryIndex* deadlines = nullptr) const;
  void flush_if_due(size_t applied);

  const std::string dir_;
  const RocksDbOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  // [data, meta]; swapped by restore() under the exclusive lock.
  std::vector<rocksdb::ColumnFamilyHandle*> families_;
  mutable std::shared_mutex families_mu_;
  std::atomic<raft::Index> applied_index_{0};
  std::atomic<raft::Term> applied_term_{0};
  std::atomic<uint64_t> hash_{0};
  std::atomic<bool> restoring_{false};  // a scrub gives way to restore()
  ExpiryIndex expiry_;
  KvObserver* observer_ = nullptr;
  // The apply thread's.
  uint64_t unflushed_ = 0;
  std::chrono::steady_clock::time_point last_flush_ = std::chrono::steady_clock::now();
};

}  // namespace raftnginx::fsm
