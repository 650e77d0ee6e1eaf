#include "cli/restore.h"

#include <random>

#include "storage/backup.h"
#include "storage/log_store.h"
#include "storage/snapshot_store.h"

namespace raftnginx::cli {
namespace {

constexpr const char* kClusterIdFile = "/cluster-id";
constexpr size_t kMaxClusterId = 300;  // a DNS name (253), '/' and 16 hex digits

std::string new_cluster_id(const std::string& cluster_name) {
  std::random_device device;
  std::uniform_int_distribution<int> nibble(0, 15);
  std::string id = cluster_name + "/";
  for (int i = 0; i < 16; ++i)
    id += "0123456789abcdef"[nibble(device)];
  return id;
}

}  // namespace

Status validate_cluster_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxClusterId)
    return Status::invalid_argument("a cluster id has 1 to 300 bytes");
  for (char c : id) {
    if (c <= ' ' || c > '~')
      return Status::invalid_argument("a cluster id is printable ASCII without spaces");
  }
  return Status();
}

Result<std::optional<std::string>> read_cluster_id(storage::Env* env, const std::string& data_dir) {
  const std::string path = data_dir + kClusterIdFile;
  if (!env->exists(path))
    return std::optional<std::string>();
  auto size = env->file_size(path);
  if (!size.ok())
    return size.status();
  if (*size > kMaxClusterId + 1)
    return Status::corruption(path + " is not a cluster id");
  auto data = env->read_file(path);
  if (!data.ok())
    return data.status();
  std::string id = std::move(data).value();
  if (id.ends_with('\n'))
    id.pop_back();
  if (!validate_cluster_id(id).ok())
    return Status::corruption(path + " is not a cluster id");
  return std::optional<std::string>(std::move(id));
}

Status write_cluster_id(storage::Env* env, const std::string& data_dir, const std::string& id) {
  if (Status s = validate_cluster_id(id); !s.ok())
    return s;
  return env->write_file_atomically(data_dir + kClusterIdFile, id + "\n");
}

namespace {

// What seeding writes, into directories that were missing or empty.
Status seed(storage::Env* env, const SeedOptions& o, const std::string& log_dir,
            const storage::Backup& backup, const std::string& cluster_id) {
  if (Status s = env->create_dirs(o.data_dir); !s.ok())
    return s;
  // First: a directory seeded only in part still belongs to the new cluster, not the old one.
  if (Status s = write_cluster_id(env, o.data_dir, cluster_id); !s.ok())
    return s;
  auto snapshots = storage::SnapshotStore::open(env, o.data_dir + "/snapshots", 1);
  if (!snapshots.ok())
    return snapshots.status();
  auto staged = (*snapshots)->begin();
  if (!staged.ok())
    return staged.status();
  if (Status s = storage::write_backup_files(env, *staged, backup); !s.ok())
    return s;
  const raft::NodeId id = cluster::node_id_for(o.member.name);
  storage::SnapshotInfo info;
  info.meta.index = backup.header.index;
  info.meta.term = backup.header.term;
  info.meta.conf.voters = {id};
  info.member_contexts = {{id, cluster::encode_member(o.member)}};
  info.fsm_name = backup.header.fsm_name;
  auto sealed = (*snapshots)->commit(*staged, std::move(info));
  if (!sealed.ok())
    return sealed.status();
  auto log = storage::LogStore::open(env, log_dir, sealed->meta, storage::LogStoreOptions{});
  if (!log.ok())
    return log.status();
  // The snapshot's term: the node's first election is of a later one.
  if (Status s = (*log)->save(
          {}, raft::HardState{backup.header.term, raft::kNoNode, backup.header.index}, true);
      !s.ok())
    return s;
  return (*log)->close();
}

}  // namespace

Result<std::string> seed_from_backup(storage::Env* env, const SeedOptions& o) {
  if (Status s = cluster::validate_member(o.member); !s.ok())
    return s;
  const std::string cluster_id = new_cluster_id(o.cluster_name);
  if (Status s = validate_cluster_id(cluster_id); !s.ok())
    return Status::invalid_argument("--cluster-name: " + s.message());
  auto data = env->read_file(o.backup_file);
  if (!data.ok())
    return data.status();
  auto backup = storage::decode_backup(*data);
  if (!backup.ok())
    return Status::corruption(o.backup_file + ": " + backup.status().message());
  const std::string log_dir = o.log_dir.empty() ? o.data_dir + "/log" : o.log_dir;
  for (const std::string& dir : {o.data_dir, log_dir}) {
    if (!env->exists(dir))
      continue;
    auto names = env->list_dir(dir);
    if (!names.ok())
      return names.status();
    if (!names->empty())
      return Status::invalid_argument(dir + " is not empty: restore seeds a new node only");
  }
  if (Status s = seed(env, o, log_dir, *backup, cluster_id); !s.ok()) {
    // All or nothing: what was written goes (the directories were missing or empty).
    for (const std::string& dir : {log_dir, o.data_dir}) {
      auto names = env->list_dir(dir);
      for (const std::string& name : names.ok() ? *names : std::vector<std::string>{})
        (void)env->remove_all(dir + "/" + name);
    }
    return s;
  }
  return cluster_id;
}

}  // namespace raftnginx::cli
