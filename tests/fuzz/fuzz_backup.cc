// Fuzz target: the backup decoder, which reads files operators hand to restore and POST /restore.
// The input is a backup without its digest: the target appends the right one, so that the
// fuzzer reaches the header and file checks behind it rather than stopping at the SHA-256.
#include <cstdint>
#include <string>
#include <string_view>

#include "storage/backup.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace raftnginx;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  storage::BackupEncoder signer;
  const std::string signed_backup = signer.body(input) + signer.finish();
  auto backup = storage::decode_backup(signed_backup);
  if (!backup.ok())
    return 0;
  // What decoded is what was there: the files' bytes, exactly, in the order listed.
  RAFTNGINX_CHECK(backup->contents.size() == backup->header.files.size(),
                  "a decoded backup lost a file");
  storage::BackupEncoder again;
  std::string encoded = again.header(backup->header);
  for (std::string_view content : backup->contents)
    encoded += again.body(content);
  encoded += again.finish();
  RAFTNGINX_CHECK(encoded == signed_backup, "a decoded backup does not survive a round trip");
  return 0;
}
