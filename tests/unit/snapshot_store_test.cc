// Snapshots on disk: sealed by a rename, verified by checksums, pruned to the newest few.
#include "storage/snapshot_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "temp_dir.h"

namespace raftnginx::storage {
namespace {

SnapshotInfo info_at(raft::Index index) {
  SnapshotInfo info;
  info.meta = raft::SnapshotMeta{index, 2, raft::ConfState{{1, 2, 3}, {4}}};
  info.member_contexts = {{1, "127.0.0.1:12001"}, {4, "127.0.0.1:12004"}};
  info.fsm_name = "memory";
  return info;
}

SnapshotInfo write_snapshot(SnapshotStore& store, raft::Index index, const std::string& body) {
  auto tmp = store.begin();
  EXPECT_TRUE(tmp.ok());
  std::ofstream(*tmp + "/data") << body;
  auto sealed = store.commit(*tmp, info_at(index));
  EXPECT_TRUE(sealed.ok()) << sealed.status().to_string();
  return *sealed;
}

TEST(SnapshotStore, SealedSnapshotIsFoundAfterReopenWithItsMembership) {
  raftnginx::testing::TempDir tmp;
  {
    auto store = std::move(SnapshotStore::open(Env::posix(), tmp.path(), 2)).value();
    EXPECT_FALSE(store->latest().has_value());
    write_snapshot(*store, 10, "state at 10");
  }
  auto store = std::move(SnapshotStore::open(Env::posix(), tmp.path(), 2)).value();
  auto latest = store->latest();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->meta, info_at(10).meta);
  EXPECT_EQ(latest->member_contexts.at(4), "127.0.0.1:12004");
  ASSERT_EQ(latest->files.size(), 1u);
  EXPECT_EQ(latest->bytes(), std::string("state at 10").size());
  EXPECT_TRUE(store->verify(*latest).ok());
}

TEST(SnapshotStore, KeepsOnlyTheNewest) {
  raftnginx::testing::TempDir tmp;
  auto store = std::move(SnapshotStore::open(Env::posix(), tmp.path(), 2)).value();
  for (raft::Index i : {10, 20, 30})
    write_snapshot(*store, i, "s" + std::to_string(i));
  ASSERT_EQ(store->snapshots().size(), 2u);
  EXPECT_EQ(store->snapshots().front().meta.index, 20u);
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/00000000000000000010-00000000000000000002"));
}

// A snapshot in use (streaming to a peer, waiting to be installed) outlives pruning until it is
// released.
TEST(SnapshotStore, PinnedSnapshotIsNotPruned) {
  raftnginx::testing::TempDir tmp;
  auto store = std::move(SnapshotStore::open(Env::posix(), tmp.path(), 2)).value();
  const SnapshotInfo in_use = write_snapshot(*store, 10, "being streamed");
  store->pin(10);
  write_snapshot(*store, 20, "s20");
  write_snapshot(*store, 30, "s30");
  ASSERT_EQ(store->snapshots().size(), 3u);
  EXPECT_TRUE(std::filesystem::exists(in_use.dir));
  ASSERT_TRUE(store->unpin(10).ok());
  EXPECT_EQ(store->snapshots().size(), 2u);
  EXPECT_FALSE(std::filesystem::exists(in_use.dir));
  EXPECT_EQ(store->snapshots().front().meta.index, 20u);
}

// A crash while a snapshot is written leaves a tmp directory that never counts.
TEST(SnapshotStore, UnsealedSnapshotIsInvisibleAndCleanedUp) {
  raftnginx::testing::TempDir tmp;
  {
    auto store = std::move(SnapshotStore::open(Env::posix(), tmp.path(), 2)).value();
    write_snapshot(*store, 10, "sealed");
    auto half = store->begin();
    std::ofstream(*half + "/data") << "half written";
  }
  auto store = std::move(SnapshotStore::open(Env::posix(), tmp.path(), 2)).value();
  EXPECT_EQ(store->latest()->meta.index, 10u);
  for (const auto& e : std::filesystem::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().rfind("tmp-", 0), std::string::npos);
}

TEST(SnapshotStore, DamageIsDetected) {
  raftnginx::testing::TempDir tmp;
  auto store = std::move(SnapshotStore::open(Env::posix(), tmp.path(), 3)).value();
  write_snapshot(*store, 10, "older");
  SnapshotInfo newest = write_snapshot(*store, 20, "newest state");
  std::ofstream(newest.dir + "/data", std::ios::trunc) << "newest stat!";
  EXPECT_EQ(store->verify(newest).code(), Status::Code::kCorruption);
  // A damaged meta file hides that snapshot; the older one is used.
  std::ofstream(newest.dir + "/meta", std::ios::app) << "x";
  auto reopened = std::move(SnapshotStore::open(Env::posix(), tmp.path(), 3)).value();
  EXPECT_EQ(reopened->latest()->meta.index, 10u);
}

TEST(SnapshotStore, MetaEncodingRejectsPathsInFileNames) {
  SnapshotInfo info = info_at(5);
  info.files.push_back(SnapshotFile{"../escape", 1, 0});
  EXPECT_EQ(decode_snapshot_info(encode_snapshot_info(info)).status().code(),
            Status::Code::kCorruption);
}

}  // namespace
}  // namespace raftnginx::storage
