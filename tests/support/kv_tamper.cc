// kv_tamper: changes one value in a stopped node's rocksdb backend behind the node's back, as a
// disk that rots, for the integrity tests. The record keeps its revisions. Test-only.
//
//   kv_tamper FSM_DIR KEY VALUE            the value changes, the state hash kept beside it does
//                                          not: what a scrub finds
//   kv_tamper FSM_DIR KEY VALUE --rehash   the hash changes with it, as on a replica that applied
//                                          something else: what a replica check finds
#include <rocksdb/db.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <vector>

#include "fsm/kv_store.h"
#include "util/coding.h"

int main(int argc, char** argv) {
  using raftnginx::fsm::kv_record_hash;
  using raftnginx::fsm::KvRecord;
  if (argc < 4 || (argc == 5 && std::strcmp(argv[4], "--rehash") != 0) || argc > 5) {
    std::cerr << "usage: kv_tamper FSM_DIR KEY VALUE [--rehash]\n";
    return 2;
  }
  const std::string key = argv[2];
  const std::string value = argv[3];
  rocksdb::Options options;
  options.atomic_flush = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> families{
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions(options)},
      {"meta", rocksdb::ColumnFamilyOptions(options)}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, argv[1], families, &handles, &raw);
  if (!s.ok()) {
    std::cerr << "kv_tamper: " << s.ToString() << "\n";
    return 1;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string stored_record;
  const bool had = db->Get(rocksdb::ReadOptions(), handles[0], key, &stored_record).ok();
  KvRecord old;
  if (had) {
    auto decoded = raftnginx::fsm::decode_kv_record(stored_record);
    if (!decoded.ok()) {
      std::cerr << "kv_tamper: " << decoded.status().to_string() << "\n";
      return 1;
    }
    old = *decoded;
  }
  KvRecord changed = old;
  changed.value = value;
  s = db->Put(rocksdb::WriteOptions(), handles[0], key, raftnginx::fsm::encode_kv_record(changed));
  if (s.ok() && argc == 5) {
    std::string stored;
    s = db->Get(rocksdb::ReadOptions(), handles[1], "state_hash", &stored);
    if (s.ok() && stored.size() == 8) {
      uint64_t hash = raftnginx::decode_u64(stored.data());
      if (had)
        hash -= kv_record_hash(key, old);
      hash += kv_record_hash(key, changed);
      std::string encoded;
      raftnginx::put_u64(&encoded, hash);
      s = db->Put(rocksdb::WriteOptions(), handles[1], "state_hash", encoded);
    }
  }
  rocksdb::FlushOptions flush;
  if (s.ok())
    s = db->Flush(flush, handles);
  for (auto* h : handles)
    (void)db->DestroyColumnFamilyHandle(h);
  if (!s.ok()) {
    std::cerr << "kv_tamper: " << s.ToString() << "\n";
    return 1;
  }
  return 0;
}
