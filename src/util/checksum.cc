#include "util/checksum.h"

#include <zlib.h>

namespace raftnginx {

uint32_t crc32(std::string_view data, uint32_t crc) {
  return static_cast<uint32_t>(
      ::crc32_z(crc, reinterpret_cast<const Bytef*>(data.data()), data.size()));
}

}  // namespace raftnginx
