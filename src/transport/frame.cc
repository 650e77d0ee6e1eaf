#include "transport/frame.h"

#include "util/coding.h"

namespace raftnginx::transport {
namespace {

constexpr char kMagic[4] = {'R', 'N', 'G', 'X'};
constexpr size_t kHeaderBytes = 5;  // length (4) | type (1)
constexpr size_t kKeptCapacity = 1 << 20;
constexpr uint32_t kMaxResumeFiles = 1000;

bool known_type(uint8_t type) {
  return type >= static_cast<uint8_t>(FrameType::kHello) &&
         type <= static_cast<uint8_t>(FrameType::kSnapshotResume);
}

}  // namespace

std::string encode_frame(FrameType type, std::string_view payload) {
  std::string out;
  out.reserve(kHeaderBytes + payload.size());
  put_u32(&out, static_cast<uint32_t>(1 + payload.size()));
  put_u8(&out, static_cast<uint8_t>(type));
  out.append(payload);
  return out;
}

std::string encode_hello(const Hello& hello) {
  std::string payload(kMagic, 4);
  put_u8(&payload, kProtocolVersion);
  put_bytes(&payload, hello.cluster_id);
  put_u64(&payload, hello.from);
  return encode_frame(FrameType::kHello, payload);
}

Result<Hello> decode_hello(std::string_view payload) {
  if (payload.size() < 5 || payload.substr(0, 4) != std::string_view(kMagic, 4))
    return Status::invalid_argument("not the raft-nginx protocol");
  Reader r(payload.substr(4));
  const uint8_t version = r.u8();
  if (version != kProtocolVersion) {
    return Status::invalid_argument("protocol version " + std::to_string(version) +
                                    " (this node speaks " + std::to_string(kProtocolVersion) + ")");
  }
  Hello h;
  const std::string_view cluster = r.bytes();
  h.from = r.u64();
  if (!r.done())
    return Status::invalid_argument("malformed hello");
  if (cluster.empty() || cluster.size() > kMaxClusterIdLength)
    return Status::invalid_argument("hello with a cluster name of " +
                                    std::to_string(cluster.size()) + " bytes");
  if (h.from == raft::kNoNode)
    return Status::invalid_argument("hello from node 0");
  h.cluster_id = std::string(cluster);
  return h;
}

std::string encode_snapshot_resume(const SnapshotResume& resume) {
  std::string payload;
  put_u8(&payload, resume.accepted ? 1 : 0);
  put_u32(&payload, static_cast<uint32_t>(resume.held.size()));
  for (const auto& [name, bytes] : resume.held) {
    put_bytes(&payload, name);
    put_u64(&payload, bytes);
  }
  return encode_frame(FrameType::kSnapshotResume, payload);
}

Result<SnapshotResume> decode_snapshot_resume(std::string_view payload) {
  Reader r(payload);
  SnapshotResume resume;
  const uint8_t accepted = r.u8();
  const uint32_t files = r.count(12, kMaxResumeFiles);
  for (uint32_t i = 0; i < files && r.ok(); ++i) {
    const std::string name(r.bytes());
    const uint64_t bytes = r.u64();
    if (!resume.held.empty() && name <= resume.held.rbegin()->first)
      r.fail();  // one spelling: names in ascending order, each once
    resume.held.emplace_hint(resume.held.end(), name, bytes);
  }
  if (!r.done() || accepted > 1)
    return Status::invalid_argument("malformed snapshot resume answer");
  resume.accepted = accepted == 1;
  return resume;
}

FrameReader::~FrameReader() {
  if (budget_ != nullptr)
    budget_->used -= buffer_.size();
}

Status FrameReader::feed(std::string_view bytes, std::vector<Frame>* out) {
  if (budget_ != nullptr) {
    if (budget_->used + bytes.size() > budget_->limit) {
      return Status::busy("frames in progress on this port already hold " +
                          std::to_string(budget_->used) + " bytes");
    }
    budget_->used += bytes.size();
  }
  buffer_.append(bytes);
  size_t pos = 0;
  while (buffer_.size() - pos >= kHeaderBytes) {
    const uint32_t length = decode_u32(buffer_.data() + pos);
    if (length == 0 || length > max_frame_bytes_)
      return Status::invalid_argument("frame of " + std::to_string(length) + " bytes");
    const auto type = static_cast<uint8_t>(buffer_[pos + 4]);
    if (!known_type(type))
      return Status::invalid_argument("unknown frame type " + std::to_string(type));
    if (buffer_.size() - pos < 4 + size_t{length})
      break;
    out->push_back(Frame{static_cast<FrameType>(type), buffer_.substr(pos + 5, length - 1)});
    pos += 4 + size_t{length};
  }
  buffer_.erase(0, pos);
  if (budget_ != nullptr)
    budget_->used -= pos;
  // A large frame's buffer goes with it, rather than staying with an idle connection.
  if (buffer_.empty() && buffer_.capacity() > kKeptCapacity)
    std::string().swap(buffer_);
  return Status();
}

}  // namespace raftnginx::transport
