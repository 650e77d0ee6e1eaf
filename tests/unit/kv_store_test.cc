// The state machine contract, checked on both built-in backends.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "fsm/kv_command.h"
#include "fsm/memory_kv.h"
#include "fsm/rocksdb_kv.h"
#include "kv_commands.h"
#include "temp_dir.h"
#include "util/coding.h"

namespace raftnginx::fsm {
namespace {

using raftnginx::testing::delete_cmd;
using raftnginx::testing::set_cmd;

std::string txn_cmd(std::vector<KvCompare> compares, std::vector<KvOp> success,
                    std::vector<KvOp> failure = {}) {
  return encode_kv_command(
      KvCommand{std::move(compares), std::move(success), std::move(failure), false, {}});
}

std::string ttl_put(const std::string& key, const std::string& value, uint64_t ttl_ms) {
  return txn_cmd({}, {KvOp{KvOp::Kind::kPut, key, value, ttl_ms}});
}

std::string expire_cmd(const std::string& key, raft::Index mod_index) {
  return txn_cmd({}, {KvOp{KvOp::Kind::kExpire, key, {}, mod_index}});
}

KvResult result_of(const ApplyResult& applied) {
  EXPECT_TRUE(applied.status.ok()) << applied.status.to_string();
  auto decoded = decode_kv_result(applied.value);
  EXPECT_TRUE(decoded.ok());
  return decoded.ok() ? *decoded : KvResult{};
}

// Keeps what a store tells its observer.
struct Recorder final : KvObserver {
  std::vector<KvEvent> events;
  std::vector<raft::Index> restored_at;
  raft::Index last = 0;
  void applied(std::vector<KvEvent> batch, raft::Index index) override {
    for (KvEvent& e : batch)
      events.push_back(std::move(e));
    last = index;
  }
  void restored(raft::Index index) override { restored_at.push_back(index); }
  // "1 put a, 2 delete a (was x)"
  std::string describe() const {
    std::string out;
    for (const KvEvent& e : events) {
      const char* type = e.type == KvEvent::Type::kPut      ? "put"
                         : e.type == KvEvent::Type::kDelete ? "delete"
                                                            : "expire";
      out += (out.empty() ? "" : ", ") + std::to_string(e.index) + " " + type + " " + e.key;
      if (e.prev_value)
        out += " (was " + *e.prev_value + ")";
    }
    return out;
  }
};

// Opens a closed store's RocksDB files directly (creating them if need be), hands `edit` the
// data and meta families, and closes them: a disk that rots, or a store an older release wrote.
void edit_rocksdb(const std::string& dir,
                  const std::function<void(rocksdb::DB*, rocksdb::ColumnFamilyHandle*,
                                           rocksdb::ColumnFamilyHandle*)>& edit) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> families{
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions(options)},
      {"meta", rocksdb::ColumnFamilyOptions(options)}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, dir, families, &handles, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  edit(db.get(), handles[0], handles[1]);
  for (auto* h : handles)
    ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
}

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

  ApplyResult apply_one(KvStore& kv, raft::Index index, const std::string& data,
                        uint64_t time_ms = 1000) {
    std::vector<ApplyResult> results;
    Command c{index, 1, time_ms, data};
    EXPECT_TRUE(kv.apply({&c, 1}, &results).ok());
    return results.at(0);
  }
  std::optional<KvRecord> record(const KvStore& kv, std::string_view key) {
    auto v = kv.get(key);
    EXPECT_TRUE(v.ok());
    return v.ok() ? *v : std::nullopt;
  }
  std::optional<std::string> get(const KvStore& kv, std::string_view key) {
    auto v = kv.get(key);
    EXPECT_TRUE(v.ok());
    return v.ok() && *v ? std::optional<std::string>((*v)->value) : std::nullopt;
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

// The state hash: equal on replicas that applied the same commands (in whatever batches),
// different as soon as one value or one revision differs, and carried by snapshots.
TEST_P(KvStoreContract, StateHashFollowsTheRecords) {
  auto a = backend.open(tmp.sub("a"));
  auto b = backend.open(tmp.sub("b"));
  ASSERT_TRUE(a->state_hash().has_value());
  const uint64_t empty = *a->state_hash();
  const std::vector<std::string> log = {set_cmd({{"x", "1"}, {"y", "2"}}), set_cmd("z", "3"),
                                        set_cmd("gone", "soon"), delete_cmd("gone")};
  std::vector<Command> commands;
  for (size_t i = 0; i < log.size(); ++i) {
    commands.push_back(Command{i + 1, 1, 1000, log[i]});
    apply_one(*a, i + 1, log[i]);
  }
  std::vector<ApplyResult> results;
  ASSERT_TRUE(b->apply(commands, &results).ok());
  EXPECT_EQ(*a->state_hash(), *b->state_hash());
  EXPECT_NE(*a->state_hash(), empty);
  apply_one(*a, 5, set_cmd("x", "2"));
  apply_one(*b, 5, set_cmd("x", "3"));
  EXPECT_NE(*a->state_hash(), *b->state_hash());
  // The same values, written at different indexes: different revisions, a different state.
  apply_one(*a, 6, set_cmd("x", "1"));
  apply_one(*b, 6, set_cmd("y", "2"));
  apply_one(*b, 7, set_cmd("x", "1"));
  apply_one(*a, 7, set_cmd("y", "2"));
  EXPECT_NE(*a->state_hash(), *b->state_hash());
  apply_one(*a, 8, set_cmd({{"x", "1"}, {"y", "2"}}));
  apply_one(*b, 8, set_cmd({{"x", "1"}, {"y", "2"}}));
  // Written again at the same index: equal records (value, creation, version, last change).
  EXPECT_EQ(*a->state_hash(), *b->state_hash());

  auto snap = a->snapshot();
  ASSERT_TRUE(snap.ok());
  const std::string dir = tmp.sub("snap");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE((*snap)->write_to(storage::Env::posix(), dir).ok());
  auto c = backend.open(tmp.sub("c"));
  ASSERT_TRUE(c->restore(storage::Env::posix(), dir, 8, 1).ok());
  EXPECT_EQ(*c->state_hash(), *a->state_hash());
  Pace pace(1 << 30);
  EXPECT_TRUE(c->scrub(pace).ok());
}

// Revisions: the indexes of the entries that created and last changed a key, and its version.
TEST_P(KvStoreContract, RevisionsComeFromTheEntriesThatWrote) {
  auto kv = backend.open(tmp.sub("db"));
  apply_one(*kv, 3, set_cmd("k", "a"));
  EXPECT_EQ(record(*kv, "k"), (KvRecord{"a", 3, 3, 1, 0}));
  apply_one(*kv, 5, set_cmd("k", "b"));
  EXPECT_EQ(record(*kv, "k"), (KvRecord{"b", 3, 5, 2, 0}));
  apply_one(*kv, 6, delete_cmd("k"));
  EXPECT_EQ(record(*kv, "k"), std::nullopt);
  apply_one(*kv, 9, set_cmd("k", "c"));
  EXPECT_EQ(record(*kv, "k"), (KvRecord{"c", 9, 9, 1, 0}));
  // A put's result carries the new revisions, without the value.
  const KvResult put = result_of(apply_one(*kv, 10, set_cmd("k", "d")));
  ASSERT_EQ(put.results.size(), 1u);
  EXPECT_EQ(put.results[0].record, (KvRecord{"", 9, 10, 2, 0}));
}

TEST_P(KvStoreContract, ComparesChooseOneBranchAppliedAtomically) {
  auto kv = backend.open(tmp.sub("db"));
  apply_one(*kv, 1, set_cmd("x", "1"));
  const auto mod_is = [](raft::Index n) {
    return KvCompare{"x", KvCompare::Field::kModIndex, n, {}};
  };
  const KvOp get_x{KvOp::Kind::kGet, "x", {}, 0};
  // Holds: the put and then the get, which sees it.
  KvResult r = result_of(apply_one(
      *kv, 2, txn_cmd({mod_is(1)}, {KvOp{KvOp::Kind::kPut, "x", "2", 0}, get_x}, {get_x})));
  EXPECT_TRUE(r.succeeded);
  ASSERT_EQ(r.results.size(), 2u);
  EXPECT_EQ(r.results[1].record, (KvRecord{"2", 1, 2, 2, 0}));
  // No longer holds: the failure branch's get tells the current revision.
  r = result_of(
      apply_one(*kv, 3, txn_cmd({mod_is(1)}, {KvOp{KvOp::Kind::kPut, "x", "3", 0}}, {get_x})));
  EXPECT_FALSE(r.succeeded);
  ASSERT_EQ(r.results.size(), 1u);
  EXPECT_EQ(r.results[0].record.mod_index, 2u);
  EXPECT_EQ(get(*kv, "x"), "2");
  // mod_index 0 and exists=false hold for an absent key; every compare must hold.
  r = result_of(apply_one(*kv, 4,
                          txn_cmd({KvCompare{"y", KvCompare::Field::kModIndex, 0, {}},
                                   KvCompare{"z", KvCompare::Field::kExists, 0, {}},
                                   KvCompare{"x", KvCompare::Field::kValue, 0, "2"},
                                   KvCompare{"x", KvCompare::Field::kVersion, 2, {}}},
                                  {KvOp{KvOp::Kind::kPut, "y", "new", 0}})));
  EXPECT_TRUE(r.succeeded);
  r = result_of(apply_one(*kv, 5,
                          txn_cmd({KvCompare{"y", KvCompare::Field::kExists, 0, {}},
                                   KvCompare{"x", KvCompare::Field::kValue, 0, "2"}},
                                  {KvOp{KvOp::Kind::kDelete, "x", {}, 0}})));
  EXPECT_FALSE(r.succeeded);
  EXPECT_TRUE(r.results.empty());
  EXPECT_EQ(get(*kv, "x"), "2");
}

TEST_P(KvStoreContract, AFailedGuardRefusesTheWholeCommandWhateverItsBranches) {
  auto kv = backend.open(tmp.sub("db"));
  apply_one(*kv, 1, set_cmd("g", "1"));
  const auto guarded = [](raft::Index g) {
    KvCommand cmd;
    cmd.guards = {KvCompare{"g", KvCompare::Field::kModIndex, g, {}}};
    cmd.compares = {KvCompare{"x", KvCompare::Field::kExists, 1, {}}};
    cmd.success = {KvOp{KvOp::Kind::kPut, "x", "success", 0}};
    cmd.failure = {KvOp{KvOp::Kind::kPut, "x", "failure", 0}};
    return encode_kv_command(cmd);
  };
  // Holds: the compares choose the branch as usual.
  EXPECT_FALSE(result_of(apply_one(*kv, 2, guarded(1))).succeeded);
  EXPECT_EQ(get(*kv, "x"), "failure");
  // Does not hold: neither branch runs, and the refusal says what changed.
  const ApplyResult refused = apply_one(*kv, 3, guarded(2));
  EXPECT_EQ(refused.status.code(), Status::Code::kBusy);
  EXPECT_NE(refused.status.message().find("g changed"), std::string::npos);
  EXPECT_EQ(get(*kv, "x"), "failure");
  EXPECT_EQ(record(*kv, "x")->mod_index, 2u);
  EXPECT_EQ(kv->applied_index(), 3u);
}

TEST_P(KvStoreContract, EveryChangeReachesTheObserverInLogOrder) {
  auto kv = backend.open(tmp.sub("db"));
  Recorder seen;
  kv->set_observer(&seen);
  apply_one(*kv, 1, set_cmd({{"a/1", "x"}, {"a/2", "y"}, {"b/1", "z"}}));
  apply_one(*kv, 2, set_cmd("a/1", "x2"));
  const KvResult r =
      result_of(apply_one(*kv, 3, txn_cmd({}, {KvOp{KvOp::Kind::kDeletePrefix, "a/", {}, 0}})));
  EXPECT_EQ(r.results.at(0).deleted, 2u);
  apply_one(*kv, 4, delete_cmd("nothing here"));
  apply_one(*kv, 5, delete_cmd("b/1"));
  // A delete-prefix's events leave the old values out (it may remove many).
  EXPECT_EQ(seen.describe(),
            "1 put a/1, 1 put a/2, 1 put b/1, 2 put a/1 (was x), "
            "3 delete a/1, 3 delete a/2, 5 delete b/1 (was z)");
  EXPECT_EQ(seen.last, 5u);
}

TEST_P(KvStoreContract, DeadlinesComeFromTheCommandsTimeAndExpiryIsConditional) {
  auto kv = backend.open(tmp.sub("db"));
  Recorder seen;
  kv->set_observer(&seen);
  apply_one(*kv, 1, ttl_put("k", "v", 5000), 1000);
  EXPECT_EQ(record(*kv, "k")->expires_at_ms, 6000u);
  EXPECT_TRUE(kv->due(5999, 10).empty());
  ASSERT_EQ(kv->due(6000, 10).size(), 1u);
  EXPECT_EQ(kv->due(6000, 10)[0].key, "k");
  EXPECT_EQ(kv->due(6000, 10)[0].mod_index, 1u);
  // Too early by the command's time, or for another revision: nothing happens.
  EXPECT_EQ(result_of(apply_one(*kv, 2, expire_cmd("k", 1), 5999)).results.at(0).deleted, 0u);
  EXPECT_EQ(result_of(apply_one(*kv, 3, expire_cmd("k", 7), 6000)).results.at(0).deleted, 0u);
  ASSERT_TRUE(record(*kv, "k").has_value());
  // Past its deadline, a key is absent to compares, though still stored.
  const KvResult absent = result_of(
      apply_one(*kv, 4, txn_cmd({KvCompare{"k", KvCompare::Field::kExists, 0, {}}}, {}), 6000));
  EXPECT_TRUE(absent.succeeded);
  EXPECT_EQ(result_of(apply_one(*kv, 5, expire_cmd("k", 1), 6000)).results.at(0).deleted, 1u);
  EXPECT_EQ(record(*kv, "k"), std::nullopt);
  EXPECT_TRUE(kv->due(UINT64_MAX, 10).empty());
  EXPECT_EQ(seen.describe(), "1 put k, 5 expire k (was v)");
  // A put without a TTL clears the deadline; one written past its deadline starts anew.
  apply_one(*kv, 6, ttl_put("t", "1", 100), 1000);
  apply_one(*kv, 7, set_cmd("t", "2"), 1050);
  EXPECT_EQ(record(*kv, "t"), (KvRecord{"2", 6, 7, 2, 0}));
  apply_one(*kv, 8, ttl_put("u", "1", 100), 1000);
  apply_one(*kv, 9, set_cmd("u", "2"), 1100);
  EXPECT_EQ(record(*kv, "u"), (KvRecord{"2", 9, 9, 1, 0}));
  EXPECT_TRUE(kv->due(UINT64_MAX, 10).empty());
}

TEST_P(KvStoreContract, ListingPagesThroughAPrefixAtOneIndex) {
  auto kv = backend.open(tmp.sub("db"));
  apply_one(*kv, 1, set_cmd({{"p/a", "1"}, {"p/b", "22"}, {"p/c", "333"}, {"q/x", "9"}}));
  apply_one(*kv, 2, set_cmd("p", "not under p/"));
  auto page = kv->list("p/", "", 2, 1 << 20, false, 0);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->index, 2u);
  EXPECT_TRUE(page->truncated);
  ASSERT_EQ(page->entries.size(), 2u);
  EXPECT_EQ(page->entries[0].first, "p/a");
  EXPECT_EQ(page->entries[1].second, (KvRecord{"22", 1, 1, 1, 0}));
  page = kv->list("p/", "p/b", 2, 1 << 20, false, 0);
  ASSERT_TRUE(page.ok());
  EXPECT_FALSE(page->truncated);
  ASSERT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(page->entries[0].first, "p/c");
  // Keys only; a byte budget; an `after` before the prefix; everything.
  page = kv->list("p/", "", 10, 1 << 20, true, 0);
  ASSERT_EQ(page->entries.size(), 3u);
  EXPECT_EQ(page->entries[2].second.value, "");
  EXPECT_EQ(page->entries[2].second.mod_index, 1u);
  page = kv->list("p/", "", 10, 4, false, 0);
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->entries.size(), 1u);
  page = kv->list("p/", "a", 10, 1 << 20, false, 0);
  EXPECT_EQ(page->entries.size(), 3u);
  page = kv->list("", "", 10, 1 << 20, true, 0);
  EXPECT_EQ(page->entries.size(), 5u);
  // Keys past their deadline are left out before the limit counts them.
  apply_one(*kv, 3, ttl_put("p/0", "gone", 10), 1000);
  page = kv->list("p/", "", 1, 1 << 20, false, 2000);
  ASSERT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(page->entries[0].first, "p/a");
}

// What one entry makes every replica hold is bounded: the values its gets return, and the keys
// one delete-prefix removes (the rest in later commands).
TEST_P(KvStoreContract, OneCommandsResultsAndDeletionsAreBounded) {
  auto kv = backend.open(tmp.sub("db"));
  const std::string big(kMaxResultValueBytes / 2 + 1, 'v');
  apply_one(*kv, 1, set_cmd({{"big1", big}, {"big2", big}}));
  const KvOp get1{KvOp::Kind::kGet, "big1", {}, 0};
  const KvOp get2{KvOp::Kind::kGet, "big2", {}, 0};
  const KvOp revisions_only{KvOp::Kind::kGet, "big1", {}, 1};
  KvResult r = result_of(apply_one(*kv, 2, txn_cmd({}, {get1, get2, revisions_only})));
  ASSERT_EQ(r.results.size(), 3u);
  EXPECT_EQ(r.results[0].record.value, big);
  EXPECT_EQ(r.results[0].deleted, 0u);
  EXPECT_TRUE(r.results[1].found);
  EXPECT_EQ(r.results[1].record.value, "");
  EXPECT_EQ(r.results[1].deleted, 1u) << "over the budget: revisions only";
  EXPECT_EQ(r.results[2].record, (KvRecord{"", 1, 1, 1, 0}));

  std::vector<std::pair<std::string, std::string>> many;
  for (size_t i = 0; i < kMaxDeletePrefixKeys + 5; ++i)
    many.emplace_back("d/" + std::to_string(i), "x");
  apply_one(*kv, 3, set_cmd(many));
  const std::string delete_all = txn_cmd({}, {KvOp{KvOp::Kind::kDeletePrefix, "d/", {}, 0}});
  r = result_of(apply_one(*kv, 4, delete_all));
  EXPECT_EQ(r.results.at(0).deleted, kMaxDeletePrefixKeys);
  EXPECT_TRUE(r.results[0].found) << "more remain";
  r = result_of(apply_one(*kv, 5, delete_all));
  EXPECT_EQ(r.results.at(0).deleted, 5u);
  EXPECT_FALSE(r.results[0].found);
}

TEST_P(KvStoreContract, SnapshotsCarryRevisionsAndDeadlines) {
  auto kv = backend.open(tmp.sub("db"));
  apply_one(*kv, 4, ttl_put("k", "v", 60000), 1000);
  apply_one(*kv, 5, set_cmd("k2", "w"));
  auto snap = kv->snapshot();
  ASSERT_TRUE(snap.ok());
  const std::string dir = tmp.sub("snap");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE((*snap)->write_to(storage::Env::posix(), dir).ok());
  auto other = backend.open(tmp.sub("db2"));
  Recorder seen;
  other->set_observer(&seen);
  ASSERT_TRUE(other->restore(storage::Env::posix(), dir, 5, 1).ok());
  EXPECT_EQ(seen.restored_at, std::vector<raft::Index>{5});
  EXPECT_EQ(record(*other, "k"), (KvRecord{"v", 4, 4, 1, 61000}));
  ASSERT_EQ(other->due(61000, 10).size(), 1u);
  EXPECT_EQ(*other->state_hash(), *kv->state_hash());
}

// A backup restored in place (POST /restore): the files of another point of history become the
// state as of the replacing entry, durably, and files that do not decode change nothing.
TEST_P(KvStoreContract, ReplaceTakesAnotherPointsStateAsOfTheReplacingEntry) {
  auto source = backend.open(tmp.sub("source"));
  apply_one(*source, 10, set_cmd({{"a", "1"}, {"b", "2"}}));
  auto snap = source->snapshot();
  ASSERT_TRUE(snap.ok());
  const std::string dir = tmp.sub("backup");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE((*snap)->write_to(storage::Env::posix(), dir).ok());

  const std::string db = tmp.sub("db");
  {
    auto kv = backend.open(db);
    apply_one(*kv, 50, set_cmd({{"a", "later"}, {"c", "3"}}));
    Recorder seen;
    kv->set_observer(&seen);
    ASSERT_TRUE(kv->replace(storage::Env::posix(), dir, 60, 4).ok());
    EXPECT_EQ(seen.restored_at, std::vector<raft::Index>{60});
    EXPECT_EQ(kv->applied_index(), 60u);
    EXPECT_EQ(kv->applied_term(), 4u);
    EXPECT_EQ(record(*kv, "a"), record(*source, "a"));  // its revisions come with it
    EXPECT_EQ(get(*kv, "c"), std::nullopt);
    EXPECT_EQ(*kv->state_hash(), *source->state_hash());

    // Garbage where the files were: refused as the operator's mistake, and nothing changed.
    const std::string bad = tmp.sub("bad");
    std::filesystem::create_directories(bad);
    for (const auto& f : std::filesystem::directory_iterator(dir)) {
      std::string bytes(std::filesystem::file_size(f.path()), 'x');
      ASSERT_TRUE(storage::Env::posix()
                      ->write_file_atomically(bad + "/" + f.path().filename().string(), bytes)
                      .ok());
    }
    EXPECT_EQ(kv->replace(storage::Env::posix(), bad, 61, 4).code(),
              Status::Code::kInvalidArgument);
    EXPECT_EQ(kv->applied_index(), 60u);
    EXPECT_EQ(get(*kv, "b"), "2");
  }
  if (GetParam() == "rocksdb") {  // durable: the new index and state survive a restart
    auto reopened = backend.open(db);
    EXPECT_EQ(reopened->applied_index(), 60u);
    EXPECT_EQ(get(*reopened, "a"), "1");
    EXPECT_EQ(get(*reopened, "c"), std::nullopt);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, KvStoreContract, ::testing::Values("memory", "rocksdb"));

// A restore or replacement cut short by a crash leaves its mark: the store opens empty, at index
// 0 (the node then restores a snapshot and replays the log), never as half of each state.
TEST(RocksDbKv, AStoreWhoseRestoreWasCutShortOpensEmpty) {
  raftnginx::testing::TempDir tmp;
  {
    auto kv = std::move(RocksDbKv::open(tmp.path())).value();
    std::vector<ApplyResult> results;
    const std::string data = set_cmd({{"a", "1"}});
    Command cmd{9, 2, 0, data};
    ASSERT_TRUE(kv->apply({&cmd, 1}, &results).ok());
  }
  edit_rocksdb(tmp.path(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* data,
                              rocksdb::ColumnFamilyHandle* meta) {
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), data, "half",
                        encode_kv_record(KvRecord{"of the new state", 3, 3, 1, 0}))
                    .ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), meta, "replacing", "").ok());
  });
  auto kv = std::move(RocksDbKv::open(tmp.path())).value();
  EXPECT_EQ(kv->applied_index(), 0u);
  EXPECT_FALSE(*kv->get("a"));
  EXPECT_FALSE(*kv->get("half"));
  EXPECT_EQ(*kv->state_hash(), 0u);
}

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
  edit_rocksdb(tmp.path(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* data,
                              rocksdb::ColumnFamilyHandle*) {
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), data, "a",
                        encode_kv_record(KvRecord{"rotten", 1, 1, 1, 0}))
                    .ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), data, "b", "not a record").ok());
  });
  // A record that does not parse is found when the store opens.
  auto refused = RocksDbKv::open(tmp.path());
  EXPECT_EQ(refused.status().code(), Status::Code::kCorruption);
  EXPECT_NE(refused.status().message().find("'b'"), std::string::npos)
      << refused.status().message();
  edit_rocksdb(tmp.path(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* data,
                              rocksdb::ColumnFamilyHandle*) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), data, "b").ok());
  });
  // One whose value changed is not: a scrub finds it.
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
  EXPECT_EQ(kv->get("k")->value().value, "v");
}

// A store written before revisions held bare values: opening it rewrites them as records
// without revisions, its state hash unchanged, so that upgraded and not yet upgraded replicas
// still compare equal; version-1 commands from an old log go on writing such records.
TEST(RocksDbKv, AStoreFromBeforeRevisionsIsUpgradedInPlace) {
  raftnginx::testing::TempDir tmp;
  edit_rocksdb(tmp.path(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* data,
                              rocksdb::ColumnFamilyHandle* meta) {
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), data, "k", "bare").ok());
    std::string applied;
    put_u64(&applied, 7);
    put_u64(&applied, 2);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), meta, "applied", applied).ok());
  });
  auto kv = std::move(RocksDbKv::open(tmp.path())).value();
  EXPECT_EQ(kv->applied_index(), 7u);
  EXPECT_EQ(*kv->get("k"), (KvRecord{"bare", 0, 0, 0, 0}));
  EXPECT_EQ(*kv->state_hash(), kv_pair_hash("k", "bare"));
  // set {"k2": "v"} as a release before revisions proposed it.
  const std::string legacy("\x01\x01\x01\x00\x00\x00\x02\x00\x00\x00k2\x01\x00\x00\x00v", 17);
  std::vector<ApplyResult> results;
  Command cmd{8, 2, 1000, legacy};
  ASSERT_TRUE(kv->apply({&cmd, 1}, &results).ok());
  EXPECT_EQ(*kv->get("k2"), (KvRecord{"v", 0, 0, 0, 0}));
  EXPECT_EQ(*kv->state_hash(), kv_pair_hash("k", "bare") + kv_pair_hash("k2", "v"));
  kv.reset();
  kv = std::move(RocksDbKv::open(tmp.path())).value();  // upgraded once only
  EXPECT_EQ(*kv->get("k"), (KvRecord{"bare", 0, 0, 0, 0}));
}

TEST(KvCommand, EncodingRoundTripsAndRefusesNewerVersions) {
  KvCommand cmd;
  cmd.compares.push_back(KvCompare{"a", KvCompare::Field::kValue, 0, "x"});
  cmd.success.push_back(KvOp{KvOp::Kind::kPut, "a", "1", 30000});
  cmd.failure.push_back(KvOp{KvOp::Kind::kGet, "a", {}, 0});
  auto back = decode_kv_command(encode_kv_command(cmd));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, cmd);
  // With guards: version 3, which a release before guards refuses rather than misreads.
  KvCommand guarded = cmd;
  guarded.guards.push_back(KvCompare{"g", KvCompare::Field::kModIndex, 7, {}});
  const std::string guarded_bytes = encode_kv_command(guarded);
  EXPECT_EQ(guarded_bytes[0], 3);
  back = decode_kv_command(guarded_bytes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, guarded);
  std::string newer = encode_kv_command(cmd);
  newer[0] = 4;
  EXPECT_EQ(decode_kv_command(newer).status().code(), Status::Code::kNotSupported);
  std::string unknown_op =
      encode_kv_command(KvCommand{{}, {KvOp{KvOp::Kind::kGet, "a", {}, 0}}, {}, false, {}});
  unknown_op[1 + 4 + 4] = 9;  // the first success op's kind
  EXPECT_EQ(decode_kv_command(unknown_op).status().code(), Status::Code::kNotSupported);
  // A count larger than the bytes that follow could hold is malformed.
  std::string lying =
      encode_kv_command(KvCommand{{}, {KvOp{KvOp::Kind::kGet, "a", {}, 0}}, {}, false, {}});
  lying[1 + 4] = 100;  // the success ops' count
  EXPECT_EQ(decode_kv_command(lying).status().code(), Status::Code::kInvalidArgument);
}

TEST(KvCommand, TheRequestsIdentityLeavesOutOnlyTheGuards) {
  KvCommand cmd;
  cmd.success.push_back(KvOp{KvOp::Kind::kPut, "a", "1", 0});
  const std::string plain = encode_kv_command(cmd);
  EXPECT_EQ(kv_request_identity(plain), plain);
  cmd.guards = {KvCompare{"g", KvCompare::Field::kModIndex, 7, {}}};
  const std::string at7 = encode_kv_command(cmd);
  cmd.guards[0].number = 9;
  const std::string at9 = encode_kv_command(cmd);
  EXPECT_NE(at7, at9);
  EXPECT_EQ(kv_request_identity(at7), kv_request_identity(at9));
  cmd.success[0].value = "2";
  EXPECT_NE(kv_request_identity(encode_kv_command(cmd)), kv_request_identity(at9));
  // Malformed guards: the whole command is its identity (and it is refused when applied).
  const std::string cut = at7.substr(0, 8);
  EXPECT_EQ(kv_request_identity(cut), cut);
}

TEST(KvCommand, VersionOneCommandsFromOldLogsStillDecode) {
  // What a release before revisions proposed: set {"a": "1"}, then delete "a".
  std::string set(
      "\x01\x01\x01\x00\x00\x00\x01\x00\x00\x00"
      "a\x01\x00\x00\x00"
      "1",
      16);
  auto decoded = decode_kv_command(set);
  ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
  EXPECT_TRUE(decoded->legacy);
  ASSERT_EQ(decoded->success.size(), 1u);
  EXPECT_EQ(decoded->success[0], (KvOp{KvOp::Kind::kPut, "a", "1", 0}));
  std::string del(
      "\x01\x02\x01\x00\x00\x00\x01\x00\x00\x00"
      "a",
      11);
  decoded = decode_kv_command(del);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->success[0].kind, KvOp::Kind::kDelete);
}

}  // namespace
}  // namespace raftnginx::fsm
