#include "fsm/kv_apply.h"

namespace raftnginx::fsm {

void ExpiryIndex::update(const std::string& key, const KvRecord* before, const KvRecord* after) {
  std::lock_guard lock(mu_);
  if (before != nullptr && before->expires_at_ms != 0)
    by_deadline_.erase({before->expires_at_ms, key, before->mod_index});
  if (after != nullptr && after->expires_at_ms != 0)
    by_deadline_.emplace(after->expires_at_ms, key, after->mod_index);
}

void ExpiryIndex::clear() {
  std::lock_guard lock(mu_);
  by_deadline_.clear();
}

std::vector<KvDue> ExpiryIndex::due(uint64_t now_ms, size_t limit) const {
  std::lock_guard lock(mu_);
  std::vector<KvDue> out;
  for (const auto& [deadline, key, mod_index] : by_deadline_) {
    if (deadline > now_ms || out.size() >= limit)
      break;
    out.push_back(KvDue{key, mod_index});
  }
  return out;
}

namespace {

// One command's run against the table.
class Txn {
 public:
  Txn(const Command& cmd, KvTable& table, const KvEffects& effects, bool legacy)
      : cmd_(cmd), table_(table), effects_(effects), legacy_(legacy) {}

  // The live record of `key`: absent if its deadline has passed by the command's time.
  Result<std::optional<KvRecord>> live(const std::string& key) {
    auto found = table_.find(key);
    if (found.ok() && *found && (*found)->expired_at(cmd_.time_ms))
      return std::optional<KvRecord>();
    return found;
  }

  Result<bool> holds(const KvCompare& c) {
    auto found = live(c.key);
    if (!found.ok())
      return found.status();
    const std::optional<KvRecord>& r = *found;
    switch (c.field) {
      case KvCompare::Field::kModIndex:
        return r ? r->mod_index == c.number : c.number == 0;
      case KvCompare::Field::kVersion:
        return r ? r->version == c.number : c.number == 0;
      case KvCompare::Field::kValue:
        return r && r->value == c.value;
      case KvCompare::Field::kExists:
        return r.has_value() == (c.number != 0);
    }
    return false;
  }

  Result<KvOpResult> run(const KvOp& op) {
    switch (op.kind) {
      case KvOp::Kind::kPut:
        return put(op);
      case KvOp::Kind::kGet: {
        auto found = live(op.key);
        if (!found.ok())
          return found.status();
        KvOpResult result;
        if (*found) {
          result.found = true;
          result.record = std::move(**found);
          const size_t size = result.record.value.size();
          if (op.number == 1 || value_bytes_ + size > kMaxResultValueBytes) {
            result.record.value.clear();
            result.deleted = 1;
          } else {
            value_bytes_ += size;
          }
        }
        return result;
      }
      case KvOp::Kind::kDelete:
        return remove(op.key, KvEvent::Type::kDelete, std::nullopt, true);
      case KvOp::Kind::kExpire:
        return remove(op.key, KvEvent::Type::kExpire, op.number, true);
      case KvOp::Kind::kDeletePrefix: {
        auto keys = table_.keys_with_prefix(op.key, kMaxDeletePrefixKeys + 1);
        if (!keys.ok())
          return keys.status();
        KvOpResult total;
        total.found = keys->size() > kMaxDeletePrefixKeys;
        for (size_t i = 0; i < keys->size() && i < kMaxDeletePrefixKeys; ++i) {
          auto one = remove((*keys)[i], KvEvent::Type::kDelete, std::nullopt, false);
          if (!one.ok())
            return one.status();
          total.deleted += one->deleted;
        }
        return total;
      }
    }
    return KvOpResult{};
  }

 private:
  Result<KvOpResult> put(const KvOp& op) {
    auto stored = table_.find(op.key);
    if (!stored.ok())
      return stored.status();
    const KvRecord* before = *stored ? &**stored : nullptr;
    const KvRecord* alive =
        before != nullptr && !before->expired_at(cmd_.time_ms) ? before : nullptr;
    KvRecord record;
    record.value = op.value;
    if (!legacy_) {
      record.mod_index = cmd_.index;
      record.create_index = alive != nullptr ? alive->create_index : cmd_.index;
      record.version = alive != nullptr ? alive->version + 1 : 1;
      record.expires_at_ms = op.number != 0 ? cmd_.time_ms + op.number : 0;
    }
    if (Status s = table_.put(op.key, record); !s.ok())
      return s;
    changed(op.key, before, &record);
    effects_.events->push_back(
        KvEvent{cmd_.index, KvEvent::Type::kPut, op.key, record,
                before != nullptr ? std::optional<std::string>(before->value) : std::nullopt});
    // The result leaves the value out: the client sent it, and retried requests' results are
    // kept in memory (node/session_table.h).
    record.value.clear();
    return KvOpResult{true, std::move(record), 0};
  }

  // Removes `key` if stored; an expiry only if `expiring` is still its mod_index and its
  // deadline has passed. `with_prev`: the event carries the old value.
  Result<KvOpResult> remove(const std::string& key, KvEvent::Type type,
                            std::optional<raft::Index> expiring, bool with_prev) {
    auto stored = table_.find(key);
    if (!stored.ok())
      return stored.status();
    if (!*stored)
      return KvOpResult{};
    const KvRecord& before = **stored;
    if (expiring && (before.mod_index != *expiring || before.expires_at_ms == 0 ||
                     before.expires_at_ms > cmd_.time_ms))
      return KvOpResult{};
    if (Status s = table_.erase(key); !s.ok())
      return s;
    changed(key, &before, nullptr);
    effects_.events->push_back(
        KvEvent{cmd_.index, type, key, KvRecord{},
                with_prev ? std::optional<std::string>(before.value) : std::nullopt});
    return KvOpResult{false, KvRecord{}, 1};
  }

  void changed(const std::string& key, const KvRecord* before, const KvRecord* after) {
    if (before != nullptr)
      *effects_.hash -= kv_record_hash(key, *before);
    if (after != nullptr)
      *effects_.hash += kv_record_hash(key, *after);
    effects_.expiry->update(key, before, after);
  }

  const Command& cmd_;
  KvTable& table_;
  const KvEffects& effects_;
  const bool legacy_;
  size_t value_bytes_ = 0;  // the values the gets returned so far
};

}  // namespace

Result<ApplyResult> apply_kv(const Command& cmd, KvTable& table, const KvEffects& effects) {
  auto decoded = decode_kv_command(cmd.data);
  if (!decoded.ok())
    return ApplyResult{decoded.status(), {}};
  Txn txn(cmd, table, effects, decoded->legacy);
  for (const KvCompare& g : decoded->guards) {
    auto held = txn.holds(g);
    if (!held.ok())
      return held.status();
    if (!*held) {
      return ApplyResult{Status::busy(g.key + " changed after this write was prepared: nothing "
                                              "was applied; send it again with a new "
                                              "Idempotency-Key"),
                         {}};
    }
  }
  KvResult result;
  for (const KvCompare& c : decoded->compares) {
    auto held = txn.holds(c);
    if (!held.ok())
      return held.status();
    if (!*held) {
      result.succeeded = false;
      break;
    }
  }
  for (const KvOp& op : result.succeeded ? decoded->success : decoded->failure) {
    auto done = txn.run(op);
    if (!done.ok())
      return done.status();
    result.results.push_back(std::move(done).value());
  }
  return ApplyResult{Status(), encode_kv_result(result)};
}

}  // namespace raftnginx::fsm
