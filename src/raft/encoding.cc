#include "raft/encoding.h"

namespace raftnginx::raft {
namespace {

constexpr uint8_t kMessageVersion = 1;
constexpr uint8_t kLastMessageType = static_cast<uint8_t>(MessageType::kTransferLeader);
// More voters or learners than any configuration holds: a list past this is malformed.
constexpr uint32_t kMaxConfIds = 4096;

void put_ids(std::string* out, const std::set<NodeId>& ids) {
  put_u32(out, static_cast<uint32_t>(ids.size()));
  for (NodeId id : ids)
    put_u64(out, id);
}

std::set<NodeId> read_ids(Reader& r) {
  std::set<NodeId> ids;
  const uint32_t n = r.count(8, kMaxConfIds);
  for (uint32_t i = 0; i < n && r.ok(); ++i)
    ids.insert(r.u64());
  return ids;
}

}  // namespace

void put_entry(std::string* out, const Entry& e) {
  put_u64(out, e.term);
  put_u64(out, e.index);
  put_u8(out, static_cast<uint8_t>(e.type));
  put_bytes(out, e.data.view());
}

Entry read_entry(Reader& r) {
  Entry e;
  e.term = r.u64();
  e.index = r.u64();
  const uint8_t type = r.u8();
  e.data = std::string(r.bytes());
  if (type > static_cast<uint8_t>(EntryType::kConfChange)) {
    r.fail();
    return e;
  }
  e.type = static_cast<EntryType>(type);
  return e;
}

void put_conf_state(std::string* out, const ConfState& conf) {
  put_ids(out, conf.voters);
  put_ids(out, conf.learners);
}

ConfState read_conf_state(Reader& r) {
  ConfState conf;
  conf.voters = read_ids(r);
  conf.learners = read_ids(r);
  return conf;
}

std::string encode_message(const Message& m) {
  std::string out;
  uint64_t size = 80 + m.context.size();
  for (const Entry& e : m.entries)
    size += 21 + e.data.size();
  out.reserve(size);
  put_u8(&out, kMessageVersion);
  put_u8(&out, static_cast<uint8_t>(m.type));
  put_u64(&out, m.from);
  put_u64(&out, m.to);
  put_u64(&out, m.term);
  put_u64(&out, m.index);
  put_u64(&out, m.log_term);
  put_u64(&out, m.commit);
  put_u8(&out, static_cast<uint8_t>((m.reject ? 1 : 0) | (m.transfer ? 2 : 0)));
  put_u64(&out, m.reject_hint);
  put_u64(&out, m.read_seq);
  put_bytes(&out, m.context);
  put_u32(&out, static_cast<uint32_t>(m.entries.size()));
  for (const Entry& e : m.entries)
    put_entry(&out, e);
  put_u64(&out, m.snapshot.index);
  put_u64(&out, m.snapshot.term);
  put_conf_state(&out, m.snapshot.conf);
  return out;
}

Result<Message> decode_message(std::string_view data) {
  Reader r(data);
  const uint8_t version = r.u8();
  if (r.ok() && version != kMessageVersion)
    return Status::not_supported("message version " + std::to_string(version));
  Message m;
  const uint8_t type = r.u8();
  if (type > kLastMessageType)
    return Status::corruption("unknown message type " + std::to_string(type));
  m.type = static_cast<MessageType>(type);
  m.from = r.u64();
  m.to = r.u64();
  m.term = r.u64();
  m.index = r.u64();
  m.log_term = r.u64();
  m.commit = r.u64();
  const uint8_t flags = r.u8();
  m.reject = flags & 1;
  m.transfer = flags & 2;
  m.reject_hint = r.u64();
  m.read_seq = r.u64();
  m.context = std::string(r.bytes());
  // An entry takes at least 21 bytes: term, index, type and the data's length.
  const uint32_t count = r.count(21, UINT32_MAX);
  for (uint32_t i = 0; i < count && r.ok(); ++i)
    m.entries.push_back(read_entry(r));
  m.snapshot.index = r.u64();
  m.snapshot.term = r.u64();
  m.snapshot.conf = read_conf_state(r);
  if (!r.done())
    return Status::corruption("malformed message");
  return m;
}

}  // namespace raftnginx::raft
