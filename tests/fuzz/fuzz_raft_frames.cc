// Fuzz target: the raft port's stream parser, as a peer's bytes reach it. The input arrives in
// pieces whose size its first byte picks; the frames read must be the same however the bytes are
// cut, and each frame's payload must decode or be refused: the hello first, then messages and
// snapshot streams. Nothing may crash, hang or allocate what did not arrive.
#include <cstdint>
#include <string_view>
#include <vector>

#include "raft/encoding.h"
#include "storage/snapshot_store.h"
#include "transport/frame.h"

namespace {

using namespace raftnginx;

// The frames `in` holds, read `piece` bytes at a time, up to the first error.
std::vector<transport::Frame> read_all(std::string_view in, size_t piece, bool* failed) {
  transport::FrameReader reader(1 << 20);
  std::vector<transport::Frame> frames;
  *failed = false;
  for (size_t pos = 0; pos < in.size(); pos += piece) {
    if (!reader.feed(in.substr(pos, piece), &frames).ok()) {
      *failed = true;
      break;
    }
  }
  return frames;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  bool whole_failed = false;
  bool pieces_failed = false;
  const auto whole = read_all(in, in.size() + 1, &whole_failed);
  const auto pieces = read_all(in, 1 + data[0] % 64, &pieces_failed);
  RAFTNGINX_CHECK(whole_failed == pieces_failed, "a stream's validity depends on how it is cut");
  RAFTNGINX_CHECK(whole.size() == pieces.size(), "a stream yields frames by how it is cut");
  for (size_t i = 0; i < whole.size(); ++i) {
    RAFTNGINX_CHECK(whole[i].type == pieces[i].type && whole[i].payload == pieces[i].payload,
                    "a frame differs by how the stream is cut");
  }
  for (size_t i = 0; i < whole.size(); ++i) {
    const transport::Frame& f = whole[i];
    if (i == 0) {
      (void)transport::decode_hello(f.payload);
    } else if (f.type == transport::FrameType::kMessage ||
               f.type == transport::FrameType::kSnapshotEnd) {
      (void)raft::decode_message(f.payload);
    } else if (f.type == transport::FrameType::kSnapshotBegin ||
               f.type == transport::FrameType::kSnapshotOffer) {
      (void)storage::decode_snapshot_info(f.payload);
    } else if (f.type == transport::FrameType::kSnapshotResume) {
      auto resume = transport::decode_snapshot_resume(f.payload);
      if (resume.ok()) {
        const std::string again = transport::encode_snapshot_resume(*resume);
        RAFTNGINX_CHECK(again.substr(5) == f.payload, "a resume answer does not round-trip");
      }
    }
  }
  return 0;
}
