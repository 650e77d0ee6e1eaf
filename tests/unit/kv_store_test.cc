// The state machine contract, checked on both built-in backends.
#include <gtest/gtest.h>

#include <filesystem>

#include "fsm/kv_command.h"
#include "fsm/memory_kv.h"
#include "fsm/rocksdb_kv.h"
#include "kv_commands.h"
#include "temp_dir.h"

namespace raftnginx::fsm {
namespace {

using raftnginx::testing::delete_cmd;
using raftnginx::testing::set_cmd;

// Opens a backend of one kind in a directory, again after a "restart".
struct Backend {
  std::string kind;
  std::unique_ptr<KvStore> open(const std::string& dir) const {
    if (kind == "memory")
      return std::make_unique<MemoryKv>();
    auto kv = RocksDbKv::open(dir);
    EXPECT_TRUE(kv.ok()) << kv.status().to_string();
    return std::move(kv).value();
  }
};

class KvStoreContract : public ::testing::TestWithParam<std::string> {
 protected:
  Backend backend{GetParam()};
  raftnginx::testing::TempDir tmp;

  ApplyResult apply_one(KvStore& kv, raft::Index index, const std::string& data) {
    std::vector<ApplyResult> results;
    Command c{index, 1, 0, data};
    EXPECT_TRUE(kv.apply({&c, 1}, &results).ok());
    return results.at(0);
  }
  std::optional<std::string> get(const KvStore& kv, std::string_view key) {
    auto v = kv.get(key);
    EXPECT_TRUE(v.ok());
    return *v;
  }
};

TEST_P(KvStoreContract, SetManyAtomicallyThenDelete) {
  auto kv = backend.open(tmp.sub("db"));
  EXPECT_TRUE(apply_one(*kv, 1, set_cmd({{"user1", "batman"}, {"user2", "robin"}})).status.ok());
  EXPECT_EQ(get(*kv, "user1"), "batman");
  EXPECT_EQ(get(*kv, "user2"), "robin");
  EXPECT_TRUE(apply_one(*kv, 2, delete_cmd("user1")).status.ok());
  EXPECT_EQ(get(*kv, "user1"), std::nullopt);
  EXPECT_EQ(kv->applied_index(), 2u);
  // Any bytes make a key, '/' and NUL included.
  const std::string odd("a/b\0c", 5);
  apply_one(*kv, 3, set_cmd({{odd, "x"}}));
  EXPECT_EQ(get(*kv, odd), "x");
}

TEST_P(KvStoreContract, MalformedCommandGetsAnErrorAndTheLogMovesOn) {
  auto kv = backend.open(tmp.sub("db"));
  EXPECT_EQ(apply_one(*kv, 1, "garbage").status.code(), Status::Code::kNotSupported);
  EXPECT_EQ(apply_one(*kv, 2, "").status.code(), Status::Code::kInvalidArgument);
  std::string truncated = set_cmd({{"k", "v"}});
  truncated.pop_back();
  EXPECT_EQ(apply_one(*kv, 3, truncated).status.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(kv->applied_index(), 3u);
  EXPECT_EQ(get(*kv, "k"), std::nullopt);
}

TEST_P(KvStoreContract, SnapshotIsPointInTimeAndRestoresEverything) {
  auto kv = backend.open(tmp.sub("db"));
  apply_one(*kv, 1, set_cmd({{"a", "1"}, {"b", "2"}}));
  auto snap = kv->snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ((*snap)->index(), 1u);
  // Apply goes on while the snapshot is written: the snapshot must not see it.
  apply_one(*kv, 2, set_cmd({{"a", "changed"}, {"c", "3"}}));
  const std::string dir = tmp.sub("snap");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE((*snap)->write_to(storage::Env::posix(), dir).ok());

  auto other = backend.open(tmp.sub("db2"));
  apply_one(*other, 1, set_cmd({{"stale", "gone after restore"}}));
  ASSERT_TRUE(other->restore(storage::Env::posix(), dir, 1, 1).ok());
  EXPECT_EQ(other->applied_index(), 1u);
  EXPECT_EQ(get(*other, "a"), "1");
  EXPECT_EQ(get(*other, "c"), std::nullopt);
  EXPECT_EQ(get(*other, "stale"), std::nullopt);
  // A snapshot for another index is refused.
  EXPECT_EQ(other->restore(storage::Env::posix(), dir, 7, 1).code(), Status::Code::kCorruption);
}

// The state hash: equal for equal pairs however they were reached (order, overwrites, deletes),
// different as soon as one value differs, and carried by snapshots.
TEST_P(KvStoreContract, StateHashFollowsThePairsNotTheHistory) {
  auto a = backend.open(tmp.sub("a"));
  auto b = backend.open(tmp.sub("b"));
  ASSERT_TRUE(a->state_hash().has_value());
  const uint64_t empty = *a->state_hash();
  apply_one(*a, 1, set_cmd({{"x", "1"}, {"y", "2"}}));
  apply_one(*a, 2, set_cmd({{"z", "3"}}));
  apply_one(*b, 1, set_cmd({{"z", "old"}}));
  apply_one(*b, 2, set_cmd({{"y", "2"}, {"z", "3"}, {"gone", "soon"}}));
  apply_one(*b, 3, delete_cmd("gone"));
  apply_one(*b, 4, set_cmd({{"x", "1"}}));
  EXPECT_EQ(*a->state_hash(), *b->state_hash());
  EXPECT_NE(*a->state_hash(), empty);
  apply_one(*b, 5, set_cmd({{"x", "2"}}));
  EXPECT_NE(*a->state_hash(), *b->state_hash());
  apply_one(*b, 6, set_cmd({{"x", "1"}}));
  EXPECT_EQ(*a->state_hash(), *b->state_hash());
  // Swapped values are a different state.
  apply_one(*b, 7, set_cmd({{"x", "2"}, {"y", "1"}}));
  EXPECT_NE(*a->state_hash(), *b->state_hash());

  auto snap = a->snapshot();
  ASSERT_TRUE(snap.ok());
  const std::string dir = tmp.sub("snap");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE((*snap)->write_to(storage::Env::posix(), dir).ok());
  auto c = backend.open(tmp.sub("c"));
  ASSERT_TRUE(c->restore(storage::Env::posix(), dir, 2, 1).ok());
  EXPECT_EQ(*c->state_hash(), *a->state_hash());
  Pace pace(1 << 30);
  EXPECT_TRUE(c->scrub(pace).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, KvStoreContract, ::testing::Values("memory", "rocksdb"));

// The hash is kept with the applied index: a reopened store has it without reading every pair,
// and a scrub finds a value changed behind the store's back, and the file that holds it damaged.
TEST(RocksDbKv, ScrubFindsValuesChangedOnDisk) {
  raftnginx::testing::TempDir tmp;
  uint64_t hash = 0;
  {
    auto kv = std::move(RocksDbKv::open(tmp.path())).value();
    std::vector<ApplyResult> results;
    const std::string data = set_cmd({{"a", "1"}, {"b", "2"}});
    Command cmd{1, 1, 0, data};
    ASSERT_TRUE(kv->apply({&cmd, 1}, &results).ok());
    hash = *kv->state_hash();
    Pace pace(1 << 30);
    EXPECT_TRUE(kv->scrub(pace).ok());
  }
  {
    auto kv = std::move(RocksDbKv::open(tmp.path())).value();
    EXPECT_EQ(*kv->state_hash(), hash);
  }
  {
    rocksdb::Options options;
    std::vector<rocksdb::ColumnFamilyDescriptor> families{
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
        {"meta", rocksdb::ColumnFamilyOptions()}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, tmp.path(), families, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[0], "a", "rotten").ok());
    for (auto* h : handles)
      (void)db->DestroyColumnFamilyHandle(h);
  }
  auto kv = std::move(RocksDbKv::open(tmp.path())).value();
  EXPECT_EQ(*kv->state_hash(), hash) << "the hash is what was applied, not what is there";
  Pace pace(1 << 30);
  const Status s = kv->scrub(pace);
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.to_string();
  EXPECT_NE(s.message().find(tmp.path()), std::string::npos);
}

// Durable backend: the applied index survives a restart together with the data.
TEST(RocksDbKv, AppliedIndexAndDataSurviveReopen) {
  raftnginx::testing::TempDir tmp;
  {
    auto kv = std::move(RocksDbKv::open(tmp.path())).value();
    std::vector<ApplyResult> results;
    const std::string data = set_cmd({{"k", "v"}});
    const std::string erase = delete_cmd("nothing");
    Command cmds[] = {{5, 2, 0, data}, {6, 2, 0, erase}};
    ASSERT_TRUE(kv->apply(cmds, &results).ok());
    ASSERT_EQ(results.size(), 2u);
  }
  auto kv = std::move(RocksDbKv::open(tmp.path())).value();
  EXPECT_EQ(kv->applied_index(), 6u);
  EXPECT_EQ(kv->applied_term(), 2u);
  EXPECT_EQ(*kv->get("k"), "v");
}

TEST(KvCommand, EncodingRoundTripsAndRefusesNewerVersions) {
  KvCommand cmd{KvCommand::Op::kSet, {{"a", "1"}, {"", ""}}, {}};
  auto back = decode_kv_command(encode_kv_command(cmd));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->pairs, cmd.pairs);
  std::string newer = encode_kv_command(cmd);
  newer[0] = 2;
  EXPECT_EQ(decode_kv_command(newer).status().code(), Status::Code::kNotSupported);
}

}  // namespace
}  // namespace raftnginx::fsm
