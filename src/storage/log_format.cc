#include "storage/log_format.h"

#include <algorithm>

#include "util/checksum.h"
#include "util/coding.h"

namespace raftnginx::storage {
namespace {

constexpr std::string_view kSegmentMagic = "RNGXLOG2";
constexpr std::string_view kRecordMagic = "RNR2";
constexpr size_t kRecordHeaderCrcAt = kRecordHeaderSize - 4;

uint32_t checksum(std::string_view bytes, uint32_t salt = 0) {
  return mask_crc(crc32(bytes, salt));
}

bool all_zero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

RecordAt unreadable(std::string why) {
  RecordAt r;
  r.kind = RecordAt::Kind::kUnreadable;
  r.why = std::move(why);
  return r;
}

}  // namespace

std::string encode_segment_header(const SegmentHeader& header) {
  std::string out(kSegmentMagic);
  put_u64(&out, header.seq);
  put_u64(&out, header.size);
  put_u32(&out, header.salt);
  put_u32(&out, checksum(out));
  return out;
}

Result<SegmentHeader> decode_segment_header(std::string_view bytes) {
  if (bytes.size() < kSegmentHeaderSize || bytes.substr(0, 8) != kSegmentMagic)
    return Status::corruption("not a log segment of this format (no RNGXLOG2 header)");
  if (checksum(bytes.substr(0, 28)) != decode_u32(bytes.data() + 28))
    return Status::corruption("the segment header's checksum does not match");
  return SegmentHeader{decode_u64(bytes.data() + 8), decode_u64(bytes.data() + 16),
                       decode_u32(bytes.data() + 24)};
}

std::string encode_record(uint32_t salt, uint8_t type, uint64_t synced, std::string_view payload) {
  std::string out;
  out.reserve(kRecordHeaderSize + payload.size());
  out += kRecordMagic;
  put_u32(&out, static_cast<uint32_t>(payload.size()));
  put_u8(&out, type);
  put_u64(&out, synced);
  put_u32(&out, checksum(payload, salt));
  put_u32(&out, checksum(out, salt));
  out += payload;
  return out;
}

uint64_t announced_record_size(std::string_view bytes, uint32_t salt) {
  if (bytes.size() < kRecordHeaderSize || bytes.substr(0, 4) != kRecordMagic ||
      checksum(bytes.substr(0, kRecordHeaderCrcAt), salt) !=
          decode_u32(bytes.data() + kRecordHeaderCrcAt))
    return 0;
  return kRecordHeaderSize + decode_u32(bytes.data() + 4);
}

RecordAt read_record(std::string_view bytes, uint64_t offset, uint64_t segment_size,
                     uint32_t salt) {
  const std::string_view header = bytes.substr(0, kRecordHeaderSize);
  if (header.size() < kRecordHeaderSize || all_zero(header))
    return RecordAt{};  // kEnd: no room for another record, or nothing written here
  const uint64_t size = announced_record_size(header, salt);
  if (size == 0)
    return unreadable("a record header that does not check out");
  if (offset + size > segment_size) {
    RecordAt r;
    r.kind = RecordAt::Kind::kDamaged;
    r.why = "a record that runs past the segment's end";
    return r;
  }
  if (bytes.size() < size)
    return unreadable("a record cut short");
  const std::string_view payload = bytes.substr(kRecordHeaderSize, size - kRecordHeaderSize);
  if (checksum(payload, salt) != decode_u32(bytes.data() + 17))
    return unreadable("a record whose payload does not check out");
  RecordAt r;
  r.kind = RecordAt::Kind::kRecord;
  r.type = static_cast<uint8_t>(bytes[8]);
  r.synced = decode_u64(bytes.data() + 9);
  r.payload = payload;
  r.size = size;
  return r;
}

}  // namespace raftnginx::storage
