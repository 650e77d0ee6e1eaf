#include "fsm/kv_command.h"

#include "util/coding.h"

namespace raftnginx::fsm {
namespace {

constexpr uint8_t kLegacyVersion = 1;
constexpr uint8_t kVersion = 2;
constexpr uint8_t kGuardedVersion = 3;
constexpr uint8_t kRecordFormat = 1;
constexpr uint8_t kLegacySet = 1;
constexpr uint8_t kLegacyDelete = 2;

void put_ops(std::string* out, const std::vector<KvOp>& ops) {
  put_u32(out, static_cast<uint32_t>(ops.size()));
  for (const KvOp& op : ops) {
    put_u8(out, static_cast<uint8_t>(op.kind));
    put_bytes(out, op.key);
    put_bytes(out, op.value);
    put_u64(out, op.number);
  }
}

// Reads ops into `ops`; false (with `why`) for a kind this release does not know.
bool read_ops(Reader& r, std::vector<KvOp>* ops, Status* why) {
  const uint32_t count = r.count(1 + 4 + 4 + 8, UINT32_MAX);
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    KvOp op;
    const uint8_t kind = r.u8();
    op.key = std::string(r.bytes());
    op.value = std::string(r.bytes());
    op.number = r.u64();
    if (r.ok() && (kind < static_cast<uint8_t>(KvOp::Kind::kPut) ||
                   kind > static_cast<uint8_t>(KvOp::Kind::kExpire))) {
      *why = Status::not_supported("command op " + std::to_string(kind));
      return false;
    }
    op.kind = static_cast<KvOp::Kind>(kind);
    ops->push_back(std::move(op));
  }
  return true;
}

void put_compares(std::string* out, const std::vector<KvCompare>& compares) {
  put_u32(out, static_cast<uint32_t>(compares.size()));
  for (const KvCompare& c : compares) {
    put_bytes(out, c.key);
    put_u8(out, static_cast<uint8_t>(c.field));
    put_u64(out, c.number);
    put_bytes(out, c.value);
  }
}

// Reads compares into `compares`; false (with `why`) for a field this release does not know.
bool read_compares(Reader& r, std::vector<KvCompare>* compares, Status* why) {
  const uint32_t count = r.count(4 + 1 + 8 + 4, UINT32_MAX);
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    KvCompare c;
    c.key = std::string(r.bytes());
    const uint8_t field = r.u8();
    c.number = r.u64();
    c.value = std::string(r.bytes());
    if (r.ok() && (field < static_cast<uint8_t>(KvCompare::Field::kModIndex) ||
                   field > static_cast<uint8_t>(KvCompare::Field::kExists))) {
      *why = Status::not_supported("compare field " + std::to_string(field));
      return false;
    }
    c.field = static_cast<KvCompare::Field>(field);
    compares->push_back(std::move(c));
  }
  return true;
}

Result<KvCommand> decode_legacy(Reader& r) {
  const uint8_t op = r.u8();
  KvCommand cmd;
  cmd.legacy = true;
  // A key (or key and value) takes at least its length field(s).
  const uint32_t count = r.count(op == kLegacySet ? 8 : 4, UINT32_MAX);
  if (op == kLegacySet) {
    for (uint32_t i = 0; i < count && r.ok(); ++i) {
      KvOp put{KvOp::Kind::kPut, std::string(r.bytes()), {}, 0};
      put.value = std::string(r.bytes());
      cmd.success.push_back(std::move(put));
    }
  } else if (op == kLegacyDelete) {
    for (uint32_t i = 0; i < count && r.ok(); ++i)
      cmd.success.push_back(KvOp{KvOp::Kind::kDelete, std::string(r.bytes()), {}, 0});
  } else if (r.ok()) {
    return Status::not_supported("command op " + std::to_string(op));
  }
  if (!r.done())
    return Status::invalid_argument("malformed command");
  return cmd;
}

}  // namespace

std::string encode_kv_record(const KvRecord& record) {
  std::string out;
  out.reserve(1 + 32 + record.value.size());
  put_u8(&out, kRecordFormat);
  put_u64(&out, record.create_index);
  put_u64(&out, record.mod_index);
  put_u64(&out, record.version);
  put_u64(&out, record.expires_at_ms);
  out.append(record.value);
  return out;
}

Result<KvRecord> decode_kv_record(std::string_view stored) {
  if (stored.size() < 33 || static_cast<uint8_t>(stored[0]) != kRecordFormat)
    return Status::corruption("a stored key-value record is malformed");
  KvRecord record;
  record.create_index = decode_u64(stored.data() + 1);
  record.mod_index = decode_u64(stored.data() + 9);
  record.version = decode_u64(stored.data() + 17);
  record.expires_at_ms = decode_u64(stored.data() + 25);
  record.value = std::string(stored.substr(33));
  return record;
}

std::string encode_kv_command(const KvCommand& cmd) {
  std::string out;
  if (cmd.guards.empty()) {
    put_u8(&out, kVersion);
  } else {
    put_u8(&out, kGuardedVersion);
    put_compares(&out, cmd.guards);
  }
  put_compares(&out, cmd.compares);
  put_ops(&out, cmd.success);
  put_ops(&out, cmd.failure);
  return out;
}

Result<KvCommand> decode_kv_command(std::string_view data) {
  Reader r(data);
  const uint8_t version = r.u8();
  if (!r.ok())
    return Status::invalid_argument("empty command");
  if (version == kLegacyVersion)
    return decode_legacy(r);
  if (version != kVersion && version != kGuardedVersion)
    return Status::not_supported("command format version " + std::to_string(version));
  KvCommand cmd;
  Status why;
  if (version == kGuardedVersion && !read_compares(r, &cmd.guards, &why))
    return why;
  if (!read_compares(r, &cmd.compares, &why) || !read_ops(r, &cmd.success, &why) ||
      !read_ops(r, &cmd.failure, &why))
    return why;
  if (!r.done())
    return Status::invalid_argument("malformed command");
  return cmd;
}

std::string_view kv_request_identity(std::string_view data) {
  Reader r(data);
  if (r.u8() != kGuardedVersion)
    return data;
  std::vector<KvCompare> guards;
  Status why;
  if (!read_compares(r, &guards, &why) || !r.ok())
    return data;
  return data.substr(r.position());
}

std::string encode_kv_result(const KvResult& result) {
  std::string out;
  put_u8(&out, result.succeeded ? 1 : 0);
  put_u32(&out, static_cast<uint32_t>(result.results.size()));
  for (const KvOpResult& op : result.results) {
    put_u8(&out, op.found ? 1 : 0);
    put_u64(&out, op.deleted);
    put_bytes(&out, op.found ? encode_kv_record(op.record) : std::string());
  }
  return out;
}

Result<KvResult> decode_kv_result(std::string_view data) {
  Reader r(data);
  KvResult result;
  result.succeeded = r.u8() != 0;
  const uint32_t count = r.count(1 + 8 + 4, UINT32_MAX);
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    KvOpResult op;
    op.found = r.u8() != 0;
    op.deleted = r.u64();
    const std::string_view record = r.bytes();
    if (op.found && r.ok()) {
      auto decoded = decode_kv_record(record);
      if (!decoded.ok())
        return Status::invalid_argument("malformed result");
      op.record = std::move(decoded).value();
    }
    result.results.push_back(std::move(op));
  }
  if (!r.done())
    return Status::invalid_argument("malformed result");
  return result;
}

}  // namespace raftnginx::fsm
