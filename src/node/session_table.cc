#include "node/session_table.h"

#include "util/coding.h"

namespace raftnginx::node {
namespace {

constexpr uint8_t kFormatVersion = 1;

// The codes a state machine may put in a result (state_machine.h); false for anything else,
// which is damage.
bool decode_status(uint8_t code, std::string message, Status* out) {
  switch (static_cast<Status::Code>(code)) {
    case Status::Code::kOk:
      *out = Status();
      return true;
    case Status::Code::kNotFound:
      *out = Status::not_found(std::move(message));
      return true;
    case Status::Code::kInvalidArgument:
      *out = Status::invalid_argument(std::move(message));
      return true;
    case Status::Code::kNotSupported:
      *out = Status::not_supported(std::move(message));
      return true;
    case Status::Code::kConflict:
      *out = Status::conflict(std::move(message));
      return true;
    default:
      return false;
  }
}

}  // namespace

uint64_t SessionTable::cost(const std::string& id, const Record& rec) {
  return id.size() + rec.result.value.size() + rec.result.status.message().size() + 64;
}

const SessionTable::Record* SessionTable::find(std::string_view id) const {
  auto it = by_id_.find(std::string(id));
  return it == by_id_.end() ? nullptr : &it->second;
}

void SessionTable::record(const std::string& id, Record rec) {
  if (auto old = by_id_.find(id); old != by_id_.end()) {
    bytes_ -= cost(id, old->second);
    by_index_.erase(old->second.index);
  }
  bytes_ += cost(id, rec);
  by_index_[rec.index] = id;
  by_id_[id] = std::move(rec);
}

void SessionTable::erase_oldest() {
  auto it = by_index_.begin();
  auto rec = by_id_.find(it->second);
  bytes_ -= cost(it->second, rec->second);
  by_id_.erase(rec);
  by_index_.erase(it);
}

void SessionTable::evict(raft::Index index, uint64_t time_ms) {
  const auto max_age = static_cast<uint64_t>(limits_.max_age.count());
  while (!by_index_.empty()) {
    const Record& oldest = by_id_.at(by_index_.begin()->second);
    const bool too_old_in_log = oldest.index + limits_.window_entries < index;
    const bool too_old_in_time = oldest.time_ms + max_age < time_ms;
    if (!too_old_in_log && !too_old_in_time && bytes_ <= limits_.max_bytes)
      break;
    erase_oldest();
  }
}

void SessionTable::clear() {
  by_id_.clear();
  by_index_.clear();
  bytes_ = 0;
}

std::string SessionTable::serialize() const {
  std::string out;
  put_u8(&out, kFormatVersion);
  put_u64(&out, by_index_.size());
  for (const auto& [index, id] : by_index_) {
    const Record& rec = by_id_.at(id);
    put_bytes(&out, id);
    put_u64(&out, rec.index);
    put_u64(&out, rec.time_ms);
    put_u64(&out, rec.command_hash);
    put_u8(&out, rec.result_known ? 1 : 0);
    put_u8(&out, static_cast<uint8_t>(rec.result.status.code()));
    put_bytes(&out, rec.result.status.message());
    put_bytes(&out, rec.result.value);
  }
  return out;
}

Result<SessionTable> SessionTable::parse(std::string_view data, SessionLimits limits) {
  SessionTable table(limits);
  Reader r(data);
  if (r.u8() != kFormatVersion)
    return Status::corruption("session table: unknown format");
  const uint64_t count = r.u64();
  for (uint64_t i = 0; i < count && r.ok(); ++i) {
    const std::string id(r.bytes());
    Record rec;
    rec.index = r.u64();
    rec.time_ms = r.u64();
    rec.command_hash = r.u64();
    rec.result_known = r.u8() == 1;
    const uint8_t code = r.u8();
    std::string message(r.bytes());
    rec.result.value = std::string(r.bytes());
    if (!r.ok())
      break;
    if (!decode_status(code, std::move(message), &rec.result.status))
      return Status::corruption("session table: a stored result has code " + std::to_string(code));
    table.record(id, std::move(rec));
  }
  if (!r.done())
    return Status::corruption("session table: malformed");
  return table;
}

}  // namespace raftnginx::node
