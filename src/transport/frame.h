// The raft port's wire format, apart from any socket so that it can be fuzzed and tested alone.
//
//   frame:  length (4, of what follows) | type (1) | payload
//     1 hello            magic "RNGX" | version (1) | cluster id (4 + n) | sender id (8)
//     2 message          raft/encoding.h message
//     3 snapshot begin   storage snapshot meta (encode_snapshot_info)
//     4 snapshot chunk   file name (4 + n) | bytes (4 + n)
//     5 snapshot end     the Snapshot message (raft/encoding.h)
//     6 snapshot ack     1 accepted, 0 refused (receiver to sender)
//     7 snapshot offer   like snapshot begin, and asks for a snapshot resume answer
//     8 snapshot resume  accepted (1) | files (4) | per file: name (4 + n) | bytes held (8)
//                        (receiver to sender: what it kept of an earlier stream of the same
//                        snapshot that broke off; the sender starts each file there)
//
// A sender offers (7) and a receiver answers (8) before any chunk: over a thin link a broken
// transfer resumes instead of starting again. A receiver of an earlier release does not know 7
// and closes the connection; the sender then begins (3) on a new one.
//
// Every connection opens with a hello that names the protocol version, the cluster and the
// sender; the sender's id is then bound to the connection: every message on it must come from
// that id (and, with TLS, the id must be the one the peer's certificate names). A hello carries
// no address: peers are only ever the members' addresses, never something a stranger announces.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "raft/types.h"
#include "raftnginx/status.h"

namespace raftnginx::transport {

enum class FrameType : uint8_t {
  kHello = 1,
  kMessage = 2,
  kSnapshotBegin = 3,
  kSnapshotChunk = 4,
  kSnapshotEnd = 5,
  kSnapshotAck = 6,
  kSnapshotOffer = 7,
  kSnapshotResume = 8,
};

inline constexpr uint8_t kProtocolVersion = 2;
// A cluster name longer than this is refused in a hello.
inline constexpr size_t kMaxClusterIdLength = 128;

std::string encode_frame(FrameType type, std::string_view payload);

struct Hello {
  std::string cluster_id;
  raft::NodeId from = raft::kNoNode;
};
std::string encode_hello(const Hello& hello);
// InvalidArgument says why the payload is not a hello this node speaks.
Result<Hello> decode_hello(std::string_view payload);

// The receiver's answer to a snapshot offer. `held`: bytes of each file it already has (files it
// has nothing of are left out).
struct SnapshotResume {
  bool accepted = false;
  std::map<std::string, uint64_t> held;
};
std::string encode_snapshot_resume(const SnapshotResume& resume);
// InvalidArgument on anything but a well-formed answer (names ascending, at most 1,000 files).
Result<SnapshotResume> decode_snapshot_resume(std::string_view payload);

struct Frame {
  FrameType type = FrameType::kHello;
  std::string payload;
};

// The bytes that frames not yet complete may hold, shared by every reader of a port: many
// peers each sending most of a large frame cannot add up to more than `limit`.
struct FrameBudget {
  uint64_t limit = 0;
  uint64_t used = 0;
};

// Cuts a byte stream into frames as the bytes arrive. It holds at most what arrived: a frame's
// announced length is believed only as far as its bytes are delivered, so a peer that announces
// 64 MiB and sends nothing costs nothing. Not thread-safe (nor is the budget).
class FrameReader {
 public:
  // `budget` (may be null: unlimited) must outlive the reader.
  explicit FrameReader(uint64_t max_frame_bytes, FrameBudget* budget = nullptr)
      : max_frame_bytes_(max_frame_bytes), budget_(budget) {}
  ~FrameReader();
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  // Appends `bytes` and moves every frame now complete to `out`. InvalidArgument on a frame
  // longer than the limit, of length 0, or of an unknown type; Busy if the budget has no room
  // for `bytes`. Either way the stream is then unusable.
  Status feed(std::string_view bytes, std::vector<Frame>* out);
  // A frame has begun and is not complete: its sender owes bytes (read deadlines apply).
  bool mid_frame() const { return !buffer_.empty(); }

 private:
  const uint64_t max_frame_bytes_;
  FrameBudget* const budget_;
  std::string buffer_;
};

}  // namespace raftnginx::transport
