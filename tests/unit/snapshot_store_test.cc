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
  // A damaged meta file is damage too, never a snapshot to pass over silently (the older one
  // may not reach the log any more): opening the store names it.
  std::ofstream(newest.dir + "/meta", std::ios::app) << "x";
  auto reopened = SnapshotStore::open(Env::posix(), tmp.path(), 3);
  ASSERT_EQ(reopened.status().code(), Status::Code::kCorruption);
  EXPECT_NE(reopened.status().message().find(newest.dir + "/meta"), std::string::npos);
  std::filesystem::remove(newest.dir + "/meta");
  EXPECT_EQ(SnapshotStore::open(Env::posix(), tmp.path(), 3).status().code(),
            Status::Code::kCorruption);
}

// Every flipped byte and every cut of the newest snapshot's files is named at open or by
// verify(): the store never falls back to the older snapshot or hands damaged state over.
TEST(SnapshotStore, EveryFlippedByteAndEveryCutIsDamage) {
  raftnginx::testing::TempDir tmp;
  std::string newest_dir;
  {
    auto store = std::move(SnapshotStore::open(Env::posix(), tmp.path(), 3)).value();
    write_snapshot(*store, 10, "older");
    newest_dir = write_snapshot(*store, 20, "the newest state of the machine").dir;
  }
  auto damage_found = [&](const std::string& file) {
    auto store = SnapshotStore::open(Env::posix(), tmp.path(), 3);
    if (!store.ok()) {
      return store.status().code() == Status::Code::kCorruption &&
             store.status().message().find(file) != std::string::npos;
    }
    const auto latest = (*store)->latest();
    return latest && latest->meta.index == 20 &&
           (*store)->verify(*latest).code() == Status::Code::kCorruption;
  };
  for (const std::string name : {"data", "meta"}) {
    const std::string file = newest_dir + "/" + name;
    std::string good;
    {
      std::ifstream in(file, std::ios::binary);
      good.assign(std::istreambuf_iterator<char>(in), {});
    }
    ASSERT_FALSE(good.empty());
    auto put = [&](const std::string& bytes) {
      std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
    };
    for (size_t at = 0; at < good.size(); ++at) {
      std::string bad = good;
      bad[at] = static_cast<char>(bad[at] ^ 0x20);
      put(bad);
      EXPECT_TRUE(damage_found(file)) << name << ": byte " << at << " flipped";
    }
    for (size_t size = 0; size < good.size(); ++size) {
      put(good.substr(0, size));
      EXPECT_TRUE(damage_found(file)) << name << ": cut at " << size;
    }
    put(good);
    ASSERT_FALSE(damage_found(file)) << "the intact snapshot must open and verify";
  }
}

TEST(SnapshotStore, MetaEncodingRejectsPathsInFileNames) {
  SnapshotInfo info = info_at(5);
  info.files.push_back(SnapshotFile{"../escape", 1, 0});
  EXPECT_EQ(decode_snapshot_info(encode_snapshot_info(info)).status().code(),
            Status::Code::kCorruption);
}

}  // namespace
}  // namespace raftnginx::storage
