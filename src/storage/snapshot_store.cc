#include "storage/snapshot_store.h"

#include <algorithm>
#include <cstdio>

#include "raft/encoding.h"
#include "raftnginx/pace.h"
#include "util/checksum.h"

namespace raftnginx::storage {
namespace {

constexpr uint8_t kMetaVersion = 1;
constexpr const char* kMetaFile = "meta";

std::string sealed_name(raft::Index index, raft::Term term) {
  char name[48];
  std::snprintf(name, sizeof name, "%020llu-%020llu", static_cast<unsigned long long>(index),
                static_cast<unsigned long long>(term));
  return name;
}

// Size and crc32 of a file, read in 1 MiB pieces (each handed to `pace`, if any).
Result<SnapshotFile> scan_file(Env* env, const std::string& dir, const std::string& name,
                               Pace* pace = nullptr) {
  auto file = env->open_for_read(dir + "/" + name);
  if (!file.ok())
    return file.status();
  SnapshotFile out{name, 0, 0};
  std::string piece;
  do {
    if (Status s = (*file)->read(1 << 20, &piece); !s.ok())
      return s;
    out.size += piece.size();
    out.crc = crc32(piece, out.crc);
    if (pace != nullptr && !pace->consumed(piece.size()))
      return Status::unavailable("called off");
  } while (!piece.empty());
  return out;
}

// "<20 digits>-<20 digits>", as sealed_name() makes it.
bool is_sealed_name(const std::string& name) {
  if (name.size() != 41 || name[20] != '-')
    return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (i != 20 && (name[i] < '0' || name[i] > '9'))
      return false;
  }
  return true;
}

}  // namespace

bool valid_snapshot_file_name(std::string_view name) {
  return !name.empty() && name.size() <= 255 && name != "." && name != ".." && name != kMetaFile &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

Result<std::vector<SnapshotFile>> scan_snapshot_files(Env* env, const std::string& dir,
                                                      Pace* pace) {
  auto names = env->list_dir(dir);
  if (!names.ok())
    return names.status();
  std::vector<SnapshotFile> files;
  for (const std::string& name : *names) {
    auto file = scan_file(env, dir, name, pace);
    if (!file.ok())
      return file.status();
    files.push_back(std::move(file).value());
  }
  return files;
}

uint64_t SnapshotInfo::bytes() const {
  uint64_t total = 0;
  for (const SnapshotFile& f : files)  // saturating: sizes come from the network too
    total = f.size > UINT64_MAX - total ? UINT64_MAX : total + f.size;
  return total;
}

std::string encode_snapshot_info(const SnapshotInfo& info) {
  std::string out;
  put_u8(&out, kMetaVersion);
  put_u64(&out, info.meta.index);
  put_u64(&out, info.meta.term);
  raft::put_conf_state(&out, info.meta.conf);
  put_u32(&out, static_cast<uint32_t>(info.member_contexts.size()));
  for (const auto& [id, context] : info.member_contexts) {
    put_u64(&out, id);
    put_bytes(&out, context);
  }
  put_bytes(&out, info.fsm_name);
  put_u32(&out, static_cast<uint32_t>(info.files.size()));
  for (const SnapshotFile& f : info.files) {
    put_bytes(&out, f.name);
    put_u64(&out, f.size);
    put_u32(&out, f.crc);
  }
  put_u32(&out, crc32(out));
  return out;
}

Result<SnapshotInfo> decode_snapshot_info(std::string_view data) {
  if (data.size() < 4 ||
      crc32(data.substr(0, data.size() - 4)) != decode_u32(data.data() + data.size() - 4)) {
    return Status::corruption("snapshot meta: checksum mismatch");
  }
  Reader r(data.substr(0, data.size() - 4));
  if (r.u8() != kMetaVersion)
    return Status::not_supported("snapshot meta: unknown version");
  SnapshotInfo info;
  info.meta.index = r.u64();
  info.meta.term = r.u64();
  info.meta.conf = raft::read_conf_state(r);
  const uint32_t contexts = r.count(12, UINT32_MAX);  // id and a length, at least
  for (uint32_t i = 0; i < contexts && r.ok(); ++i) {
    const raft::NodeId id = r.u64();
    info.member_contexts[id] = std::string(r.bytes());
  }
  info.fsm_name = std::string(r.bytes());
  const uint32_t files = r.count(16, UINT32_MAX);  // name length, size and checksum, at least
  for (uint32_t i = 0; i < files && r.ok(); ++i) {
    SnapshotFile f;
    f.name = std::string(r.bytes());
    f.size = r.u64();
    f.crc = r.u32();
    if (!valid_snapshot_file_name(f.name))
      return Status::corruption("snapshot meta: bad file name '" + f.name + "'");
    info.files.push_back(std::move(f));
  }
  if (!r.done())
    return Status::corruption("snapshot meta: malformed");
  return info;
}

Result<std::unique_ptr<SnapshotStore>> SnapshotStore::open(Env* env, const std::string& dir,
                                                           size_t retain) {
  if (Status s = env->create_dirs(dir); !s.ok())
    return s;
  std::unique_ptr<SnapshotStore> store(new SnapshotStore(env, dir, std::max<size_t>(retain, 1)));
  if (Status s = store->load(); !s.ok())
    return s;
  return store;
}

Status SnapshotStore::load() {
  auto names = env_->list_dir(dir_);
  if (!names.ok())
    return names.status();
  for (const std::string& name : *names) {
    const std::string path = dir_ + "/" + name;
    if (name.rfind("tmp-", 0) == 0) {
      if (Status s = env_->remove_all(path); !s.ok())
        return s;
      continue;
    }
    if (!is_sealed_name(name))
      continue;  // not ours
    // A sealed snapshot's meta was synced before the rename that sealed it: one that cannot be
    // read is damage, never a snapshot to pass over (older ones may not reach the log).
    auto meta = env_->read_file(path + "/" + kMetaFile);
    if (!meta.ok())
      return Status::corruption(path + "/" + kMetaFile + ": " + meta.status().message());
    auto info = decode_snapshot_info(*meta);
    if (!info.ok())
      return Status::corruption(path + "/" + kMetaFile + ": " + info.status().message());
    if (sealed_name(info->meta.index, info->meta.term) != name)
      return Status::corruption(path + "/" + kMetaFile + " describes another snapshot");
    info.value().dir = path;
    snapshots_.push_back(std::move(info).value());
  }
  std::sort(snapshots_.begin(), snapshots_.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return a.meta.index < b.meta.index;
  });
  return Status();
}

std::string SnapshotStore::fresh_tmp_path() {
  std::string path;
  do {
    path = dir_ + "/tmp-" + std::to_string(next_tmp_++);
  } while (env_->exists(path));
  return path;
}

Result<std::string> SnapshotStore::begin() {
  const std::string path = fresh_tmp_path();
  if (Status s = env_->create_dirs(path); !s.ok())
    return s;
  return path;
}

void SnapshotStore::abort(const std::string& tmp_dir) {
  (void)env_->remove_all(tmp_dir);
}

Result<SnapshotInfo> SnapshotStore::commit(const std::string& tmp_dir, SnapshotInfo info,
                                           const std::vector<SnapshotFile>* expected) {
  auto files = scan_snapshot_files(env_, tmp_dir);
  if (!files.ok())
    return files.status();
  info.files = std::move(files).value();
  for (const SnapshotFile& file : info.files) {
    // The files must be durable before the rename that makes the snapshot visible.
    uint64_t size = 0;
    auto handle = env_->open_for_append(tmp_dir + "/" + file.name, &size);
    if (!handle.ok())
      return handle.status();
    if (Status s = (*handle)->sync(); !s.ok())
      return s;
  }
  if (expected) {
    auto same = [](const SnapshotFile& a, const SnapshotFile& b) {
      return a.name == b.name && a.size == b.size && a.crc == b.crc;
    };
    if (!std::equal(info.files.begin(), info.files.end(), expected->begin(), expected->end(),
                    same)) {
      abort(tmp_dir);
      return Status::corruption("received snapshot " + std::to_string(info.meta.index) +
                                " does not match its checksums");
    }
  }
  if (Status s = env_->write_file_atomically(tmp_dir + "/" + kMetaFile, encode_snapshot_info(info));
      !s.ok())
    return s;
  if (Status s = env_->sync_dir(tmp_dir); !s.ok())
    return s;
  const std::string final_dir = dir_ + "/" + sealed_name(info.meta.index, info.meta.term);
  if (env_->exists(final_dir)) {
    // The same snapshot again (a retried receive): keep the one already sealed.
    abort(tmp_dir);
  } else {
    if (Status s = env_->rename(tmp_dir, final_dir); !s.ok())
      return s;
    if (Status s = env_->sync_dir(dir_); !s.ok())
      return s;
    info.dir = final_dir;
    snapshots_.push_back(info);
    std::sort(
        snapshots_.begin(), snapshots_.end(),
        [](const SnapshotInfo& a, const SnapshotInfo& b) { return a.meta.index < b.meta.index; });
  }
  if (Status s = prune(); !s.ok())
    return s;
  info.dir = final_dir;
  return info;
}

Status SnapshotStore::unpin(raft::Index index) {
  auto it = pins_.find(index);
  if (it != pins_.end() && --it->second == 0)
    pins_.erase(it);
  return prune();
}

Status SnapshotStore::prune() {
  // The newest `retain` always stay; older ones go unless pinned.
  size_t older = snapshots_.size() > retain_ ? snapshots_.size() - retain_ : 0;
  for (auto it = snapshots_.begin(); older > 0; --older) {
    if (pins_.count(it->meta.index)) {
      ++it;
      continue;
    }
    // Renamed out of the sealed names first (and the rename synced): a crash while its files
    // go leaves a leftover that start-up removes, never a sealed snapshot with files missing.
    const std::string doomed = fresh_tmp_path();
    if (Status s = env_->rename(it->dir, doomed); !s.ok())
      return s;
    if (Status s = env_->sync_dir(dir_); !s.ok())
      return s;
    if (Status s = env_->remove_all(doomed); !s.ok())
      return s;
    it = snapshots_.erase(it);
  }
  return Status();
}

Status SnapshotStore::verify(const SnapshotInfo& info, Pace* pace) const {
  for (const SnapshotFile& f : info.files) {
    auto got = scan_file(env_, info.dir, f.name, pace);
    if (!got.ok())
      return got.status();
    if (got->size != f.size || got->crc != f.crc)
      return Status::corruption("snapshot file " + info.dir + "/" + f.name + " is damaged");
  }
  return Status();
}

std::optional<SnapshotInfo> SnapshotStore::latest() const {
  if (snapshots_.empty())
    return std::nullopt;
  return snapshots_.back();
}

}  // namespace raftnginx::storage
