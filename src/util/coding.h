// Little-endian fixed-width encoding for on-disk and on-wire formats, and a reader that fails
// cleanly on truncated input instead of reading past the end.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace raftnginx {

inline void put_u8(std::string* out, uint8_t v) {
  out->push_back(static_cast<char>(v));
}

inline void put_u32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void put_u64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void put_bytes(std::string* out, std::string_view bytes) {
  put_u32(out, static_cast<uint32_t>(bytes.size()));
  out->append(bytes);
}

inline uint32_t decode_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

inline uint64_t decode_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

// Reads fields in order; once a read runs past the end, ok() is false and every later read
// returns zero values.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  uint8_t u8() { return take(1) ? static_cast<uint8_t>(in_[pos_ - 1]) : 0; }
  uint32_t u32() { return take(4) ? decode_u32(in_.data() + pos_ - 4) : 0; }
  uint64_t u64() { return take(8) ? decode_u64(in_.data() + pos_ - 8) : 0; }
  std::string_view bytes() {
    const uint32_t n = u32();
    return take(n) ? in_.substr(pos_ - n, n) : std::string_view();
  }

  // Reads a count of items each at least `min_item_bytes` long: a count the remaining input
  // cannot hold (or past `max`) marks the input malformed and reads as 0, so that a decoder
  // never reserves or loops for what is not there.
  uint32_t count(size_t min_item_bytes, uint32_t max) {
    const uint32_t n = u32();
    if (n > max || (ok_ && n > (in_.size() - pos_) / min_item_bytes)) {
      ok_ = false;
      return 0;
    }
    return n;
  }
  // Marks the input as malformed (a value read was out of range).
  void fail() { ok_ = false; }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }
  size_t position() const { return pos_; }

 private:
  bool take(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }

  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace raftnginx
