// A new cluster from a backup (raft-nginx restore FILE DATA_DIR ...), and the cluster id that
// keeps it apart from the cluster the backup came from.
//
// Seeding writes, into an empty data directory, the backup's files as the node's first snapshot
// (at the backup's index and term, with this node as the only voter), a hard state that
// commits it, and a new cluster id. Started on that directory, the node elects itself and serves
// the backup's state; other nodes join it (-join) and learn the id from its answer. Like
// etcdutl snapshot restore, the id is new: the old cluster's members are strangers to it.
//
// The cluster id lives in <data dir>/cluster-id. A directory without one belongs to a cluster
// that goes by its --cluster-name (every cluster made before ids, and those formed from peers).
//
// Threads: plain functions, for the command line and the daemon's start.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cluster/member.h"
#include "raftnginx/env.h"
#include "raftnginx/status.h"

namespace raftnginx::cli {

// Printable ASCII without spaces, 1 to 300 bytes.
Status validate_cluster_id(std::string_view id);
// The id recorded in `data_dir`, nullopt if none; Corruption if the file is not a valid id.
Result<std::optional<std::string>> read_cluster_id(storage::Env* env, const std::string& data_dir);
Status write_cluster_id(storage::Env* env, const std::string& data_dir, const std::string& id);

struct SeedOptions {
  std::string backup_file;
  std::string data_dir;
  std::string log_dir;  // empty: <data_dir>/log
  cluster::Member member;
  std::string cluster_name;
};

// Seeds options.data_dir (missing or empty) from the backup; returns the new cluster's id.
// The backup is checked whole first: a damaged one is refused (Corruption) and nothing written;
// a seeding that fails halfway removes what it wrote.
Result<std::string> seed_from_backup(storage::Env* env, const SeedOptions& options);

}  // namespace raftnginx::cli
