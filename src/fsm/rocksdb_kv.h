// RocksDbKv: the key-value store on RocksDB, the default backend.
//
// Column families: "default" holds the keys and values, "meta" the applied index and term. Each
// apply() batch is one WriteBatch across both, so the
// effects and the applied index are durable together (the exactly-once contract of
// state_machine.h). RocksDB's WAL is off: the raft log is already the write-ahead log, so a
// second one would only cost a write per batch. After a crash RocksDB holds the batches its last
// flush reached, the families flushed together (atomic_flush), and the node replays the
// log after the applied index that survived, or restores the latest snapshot if the log no
// longer reaches back that far. Closing the store flushes, so a clean restart re-applies nothing.
//
// A snapshot is a RocksDB snapshot (free to take); write_to() streams its column families
// into SST files while apply goes on; restore() replaces the families with them.
#pragma once

#include <rocksdb/db.h>

#include <memory>
#include <shared_mutex>

#include "fsm/kv_store.h"

namespace raftnginx::fsm {

class RocksDbKv final : public KvStore {
 public:
  // Opens (or creates) the store in `dir`.
  // `max_open_files`: the most table files RocksDB keeps open (-1: no limit).
  static Result<std::unique_ptr<RocksDbKv>> open(const std::string& dir, int max_open_files = -1);
  ~RocksDbKv() override;

  std::string name() const override { return "rocksdb"; }
  Status apply(std::span<const Command> commands, std::vector<ApplyResult>* results) override;
  raft::Index applied_index() const override;
  raft::Term applied_term() const override;
  Result<std::unique_ptr<Snapshot>> snapshot() override;
  Status restore(storage::Env* env, const std::string& dir, raft::Index index,
                 raft::Term term) override;
  Result<std::optional<std::string>> get(std::string_view key) const override;

 private:
  explicit RocksDbKv(std::string dir) : dir_(std::move(dir)) {}
  Status load_meta();

  const std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  // [data, meta]; swapped by restore() under the exclusive lock.
  std::vector<rocksdb::ColumnFamilyHandle*> families_;
  mutable std::shared_mutex families_mu_;
  std::atomic<raft::Index> applied_index_{0};
  std::atomic<raft::Term> applied_term_{0};
};

}  // namespace raftnginx::fsm
