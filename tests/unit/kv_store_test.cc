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

INSTANTIATE_TEST_SUITE_P(Backends, KvStoreContract, ::testing::Values("memory", "rocksdb"));

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
