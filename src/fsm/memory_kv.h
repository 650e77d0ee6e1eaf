// MemoryKv: the key-value store held in memory (hraftd's map of string to string).
//
// Volatile: applied_index() is 0 after a restart and the node rebuilds it from the latest
// snapshot plus the log. A snapshot copies the map under the lock, which pauses apply for the
// copy: fine for the sizes this backend is meant for; use the RocksDB backend beyond that.
#pragma once

#include <map>
#include <shared_mutex>

#include "fsm/kv_apply.h"
#include "fsm/kv_store.h"

namespace raftnginx::fsm {

class MemoryKv final : public KvStore {
 public:
  std::string name() const override { return "memory"; }
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
  // Kept up to date per write (kv_store.h). Nothing on disk to scrub.
  std::optional<uint64_t> state_hash() const override;

 private:
  // The state in the snapshot file in `dir`, which must cover (index, term) if `files_at_index`,
  // as of (index, term).
  Status load(storage::Env* env, const std::string& dir, raft::Index index, raft::Term term,
              bool files_at_index);

  mutable std::shared_mutex mu_;
  std::map<std::string, KvRecord, std::less<>> data_;
  ExpiryIndex expiry_;
  KvObserver* observer_ = nullptr;
  raft::Index applied_index_ = 0;
  raft::Term applied_term_ = 0;
  uint64_t hash_ = 0;
};

}  // namespace raftnginx::fsm
