#include "storage/backup.h"

#include <openssl/evp.h>

#include "util/checksum.h"
#include "util/coding.h"

namespace raftnginx::storage {
namespace {

constexpr std::string_view kMagic = "RNBACKUP";
constexpr uint8_t kVersion = 1;
constexpr size_t kDigestBytes = 32;
constexpr uint32_t kMaxFiles = 4096;
constexpr size_t kMaxNameBytes = 256;

std::string sha256(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(out), n);
}

}  // namespace

struct BackupEncoder::Digest {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Digest() { EVP_MD_CTX_free(ctx); }
};

BackupEncoder::BackupEncoder() : digest_(std::make_unique<Digest>()) {
  EVP_DigestInit_ex(digest_->ctx, EVP_sha256(), nullptr);
}

BackupEncoder::~BackupEncoder() = default;

std::string BackupEncoder::header(const BackupHeader& h) {
  std::string out(kMagic);
  put_u8(&out, kVersion);
  put_bytes(&out, h.cluster_id);
  put_bytes(&out, h.fsm_name);
  put_u64(&out, h.index);
  put_u64(&out, h.term);
  put_u64(&out, h.taken_at_ms);
  put_bytes(&out, h.taken_by);
  put_u32(&out, static_cast<uint32_t>(h.files.size()));
  for (const SnapshotFile& f : h.files) {
    put_bytes(&out, f.name);
    put_u64(&out, f.size);
    put_u32(&out, f.crc);
  }
  return body(out);
}

std::string BackupEncoder::body(std::string_view bytes) {
  EVP_DigestUpdate(digest_->ctx, bytes.data(), bytes.size());
  return std::string(bytes);
}

std::string BackupEncoder::finish() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(digest_->ctx, out, &n);
  return std::string(reinterpret_cast<const char*>(out), n);
}

Result<Backup> decode_backup(std::string_view data) {
  if (data.size() < kMagic.size() + kDigestBytes || !data.starts_with(kMagic))
    return Status::corruption("not a raft-nginx backup");
  const std::string_view signed_part = data.substr(0, data.size() - kDigestBytes);
  if (sha256(signed_part) != data.substr(signed_part.size()))
    return Status::corruption("the backup's checksum does not match: it is damaged or cut short");
  Reader r(signed_part.substr(kMagic.size()));
  if (r.u8() != kVersion)
    return Status::corruption("a backup of a version this release does not read");
  Backup b;
  BackupHeader& h = b.header;
  h.cluster_id = std::string(r.bytes());
  h.fsm_name = std::string(r.bytes());
  h.index = r.u64();
  h.term = r.u64();
  h.taken_at_ms = r.u64();
  h.taken_by = std::string(r.bytes());
  const uint32_t count = r.count(16, kMaxFiles);  // a name's length, size and crc at least
  uint64_t total = 0;
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    SnapshotFile f;
    f.name = std::string(r.bytes());
    f.size = r.u64();
    f.crc = r.u32();
    if (!r.ok())
      break;
    if (f.name.size() > kMaxNameBytes || !valid_snapshot_file_name(f.name) ||
        f.name.starts_with("raftnginx."))
      return Status::corruption("the backup names a file '" + f.name + "' it may not hold");
    for (const SnapshotFile& seen : h.files) {
      if (seen.name == f.name)
        return Status::corruption("the backup holds file '" + f.name + "' twice");
    }
    if (f.size > signed_part.size() - total)
      return Status::corruption("the backup's file sizes exceed its length");
    total += f.size;
    h.files.push_back(std::move(f));
  }
  if (!r.ok() || h.index == 0 || h.term == 0 || h.fsm_name.empty())
    return Status::corruption("the backup's header is malformed");
  const size_t at = kMagic.size() + r.position();
  if (signed_part.size() - at != total)
    return Status::corruption("the backup's length does not match the files it lists");
  size_t pos = at;
  for (const SnapshotFile& f : h.files) {
    const std::string_view content = signed_part.substr(pos, f.size);
    if (crc32(content) != f.crc)
      return Status::corruption("the backup's file '" + f.name + "' fails its crc32");
    b.contents.push_back(content);
    pos += f.size;
  }
  return b;
}

Status write_backup_files(Env* env, const std::string& dir, const Backup& backup) {
  for (size_t i = 0; i < backup.header.files.size(); ++i) {
    const std::string path = dir + "/" + backup.header.files[i].name;
    uint64_t size = 0;
    auto file = env->open_for_append(path, &size);
    if (!file.ok())
      return file.status();
    if (Status s = (*file)->append(backup.contents[i]); !s.ok())
      return s;
    if (Status s = (*file)->sync(); !s.ok())
      return s;
    if (Status s = (*file)->close(); !s.ok())
      return s;
  }
  return env->sync_dir(dir);
}

}  // namespace raftnginx::storage
