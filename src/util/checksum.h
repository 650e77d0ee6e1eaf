// Checksums and hashes of stored and transmitted bytes: one CRC-32 (zlib's) for the log,
// snapshots and backends, its masked form for data that may itself hold CRCs, and one stable
// 64-bit hash (FNV-1a) where a value must be the same on every node and every build.
#pragma once

#include <cstdint>
#include <string_view>

namespace raftnginx {

// CRC-32 of `data`, continuing from `crc` (0 to start).
uint32_t crc32(std::string_view data, uint32_t crc = 0);

// A CRC of data that itself contains CRCs is weak; masking (LevelDB's idea) avoids that.
inline uint32_t mask_crc(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// FNV-1a, 64 bits: stable across machines and builds (unlike std::hash).
inline uint64_t fnv1a64(std::string_view data) {
  uint64_t hash = 14695981039346656037ull;
  for (const char c : data) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace raftnginx
