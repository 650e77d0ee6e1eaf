#include "fsm/session_table.h"

#include "util/coding.h"

namespace raftnginx::fsm {
namespace {

Status decode_status(uint8_t code, std::string message) {
  switch (static_cast<Status::Code>(code)) {
    case Status::Code::kOk:
      return Status();
    case Status::Code::kNotFound:
      return Status::not_found(std::move(message));
    case Status::Code::kInvalidArgument:
      return Status::invalid_argument(std::move(message));
    case Status::Code::kNotSupported:
      return Status::not_supported(std::move(message));
    default:
      return Status::corruption("stored result: " + std::move(message));
  }
}

}  // namespace

std::optional<ApplyResult> SessionTable::find(std::string_view id) const {
  auto it = by_id_.find(std::string(id));
  if (it == by_id_.end())
    return std::nullopt;
  return it->second.result;
}

void SessionTable::record(std::string id, raft::Index index, const ApplyResult& result) {
  by_index_[index] = id;
  by_id_[std::move(id)] = Record{index, result};
}

std::vector<std::string> SessionTable::evict(raft::Index index) {
  std::vector<std::string> gone;
  while (!by_index_.empty() && by_index_.begin()->first + window_ < index) {
    auto it = by_index_.begin();
    auto rec = by_id_.find(it->second);
    // A retried id recorded again later keeps its newer record.
    if (rec != by_id_.end() && rec->second.index == it->first) {
      gone.push_back(it->second);
      by_id_.erase(rec);
    }
    by_index_.erase(it);
  }
  return gone;
}

void SessionTable::clear() {
  by_id_.clear();
  by_index_.clear();
}

std::string SessionTable::encode_record(raft::Index index, const ApplyResult& result) {
  std::string out;
  put_u64(&out, index);
  put_u8(&out, static_cast<uint8_t>(result.status.code()));
  put_bytes(&out, result.status.message());
  put_bytes(&out, result.value);
  return out;
}

Status SessionTable::load_record(std::string id, std::string_view encoded) {
  Reader r(encoded);
  const raft::Index index = r.u64();
  const uint8_t code = r.u8();
  std::string message(r.bytes());
  std::string value(r.bytes());
  if (!r.done())
    return Status::corruption("malformed session record for " + id);
  record(std::move(id), index, ApplyResult{decode_status(code, std::move(message)), value});
  return Status();
}

std::string SessionTable::serialize() const {
  std::string out;
  put_u32(&out, static_cast<uint32_t>(by_id_.size()));
  for (const auto& [index, id] : by_index_) {
    auto it = by_id_.find(id);
    if (it == by_id_.end() || it->second.index != index)
      continue;
    put_bytes(&out, id);
    put_bytes(&out, encode_record(index, it->second.result));
  }
  return out;
}

Status SessionTable::parse(std::string_view data) {
  clear();
  Reader r(data);
  const uint32_t count = r.u32();
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    std::string id(r.bytes());
    const std::string_view rec = r.bytes();
    if (!r.ok())
      break;
    if (Status s = load_record(std::move(id), rec); !s.ok())
      return s;
  }
  if (!r.done())
    return Status::corruption("malformed session table");
  return Status();
}

}  // namespace raftnginx::fsm
