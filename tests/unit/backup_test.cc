// The backup file (storage/backup.h): what it carries, and every way a damaged or hostile one is
// refused before anything is written.
#include "storage/backup.h"

#include <gtest/gtest.h>

#include "temp_dir.h"
#include "util/checksum.h"

namespace raftnginx::storage {
namespace {

struct Piece {
  std::string name;
  std::string bytes;
};

BackupHeader header_for(const std::vector<Piece>& pieces) {
  BackupHeader h{"raft-nginx/0123456789abcdef", "memory", 42, 7, 1700000000000, "node2", {}};
  for (const Piece& p : pieces)
    h.files.push_back(SnapshotFile{p.name, p.bytes.size(), crc32(p.bytes)});
  return h;
}

// A backup as GET /backup streams it, from a header that may lie about its files.
std::string encode(const BackupHeader& h, const std::vector<Piece>& pieces) {
  BackupEncoder e;
  std::string out = e.header(h);
  for (const Piece& p : pieces) {
    out += e.body(p.bytes.substr(0, p.bytes.size() / 2));
    out += e.body(p.bytes.substr(p.bytes.size() / 2));
  }
  return out + e.finish();
}

const std::vector<Piece> kPieces{{"state.bin", std::string(1000, 's')}, {"extra", "xyz"}};

TEST(Backup, CarriesItsFilesAndWhereItWasTaken) {
  const std::string data = encode(header_for(kPieces), kPieces);
  auto b = decode_backup(data);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_EQ(b->header.cluster_id, "raft-nginx/0123456789abcdef");
  EXPECT_EQ(b->header.fsm_name, "memory");
  EXPECT_EQ(b->header.index, 42u);
  EXPECT_EQ(b->header.term, 7u);
  EXPECT_EQ(b->header.taken_by, "node2");
  ASSERT_EQ(b->contents.size(), 2u);
  EXPECT_EQ(b->contents[0], kPieces[0].bytes);
  EXPECT_EQ(b->contents[1], kPieces[1].bytes);

  raftnginx::testing::TempDir tmp;
  const std::string dir = tmp.sub("out");
  ASSERT_TRUE(Env::posix()->create_dirs(dir).ok());
  ASSERT_TRUE(write_backup_files(Env::posix(), dir, *b).ok());
  auto scanned = scan_snapshot_files(Env::posix(), dir);
  ASSERT_TRUE(scanned.ok());
  ASSERT_EQ(scanned->size(), 2u);
  for (const SnapshotFile& f : *scanned) {
    const auto& want = f.name == "extra" ? kPieces[1] : kPieces[0];
    EXPECT_EQ(f.size, want.bytes.size());
    EXPECT_EQ(f.crc, crc32(want.bytes));
  }
}

TEST(Backup, EveryFlippedByteAndEveryCutIsRefused) {
  const std::string data = encode(header_for(kPieces), kPieces);
  for (size_t i = 0; i < data.size(); ++i) {
    std::string flipped = data;
    flipped[i] ^= 0x01;
    EXPECT_EQ(decode_backup(flipped).status().code(), Status::Code::kCorruption) << i;
  }
  for (size_t n = 0; n < data.size(); n += 7)
    EXPECT_EQ(decode_backup(data.substr(0, n)).status().code(), Status::Code::kCorruption) << n;
  EXPECT_EQ(decode_backup(data + "x").status().code(), Status::Code::kCorruption);
}

// Headers that pass the digest (whoever made the file computed it) but lie.
TEST(Backup, HostileHeadersAreRefusedWithoutTrustingTheirSizes) {
  for (const char* name : {"", ".", "..", "a/b", "raftnginx.node", "meta"}) {
    const std::vector<Piece> pieces{{name, "abc"}};
    EXPECT_EQ(decode_backup(encode(header_for(pieces), pieces)).status().code(),
              Status::Code::kCorruption)
        << name;
  }
  const std::vector<Piece> twice{{"f", "1"}, {"f", "2"}};
  EXPECT_FALSE(decode_backup(encode(header_for(twice), twice)).ok());

  BackupHeader huge = header_for(kPieces);
  huge.files[0].size = UINT64_MAX - 10;  // more than the file holds
  EXPECT_FALSE(decode_backup(encode(huge, kPieces)).ok());
  BackupHeader short_by_one = header_for(kPieces);
  short_by_one.files[1].size -= 1;  // the bytes no longer add up
  EXPECT_FALSE(decode_backup(encode(short_by_one, kPieces)).ok());
  BackupHeader bad_crc = header_for(kPieces);
  bad_crc.files[0].crc ^= 1;
  auto refused = decode_backup(encode(bad_crc, kPieces));
  EXPECT_NE(refused.status().message().find("state.bin"), std::string::npos);
  BackupHeader no_index = header_for(kPieces);
  no_index.index = 0;
  EXPECT_FALSE(decode_backup(encode(no_index, kPieces)).ok());
}

}  // namespace
}  // namespace raftnginx::storage
