// Scrubbing: now and then, a thread of the node re-reads everything the node stores (closed
// log segments, sealed snapshots, the state machine's files) at a bounded rate, so that damage
// is found while the cluster still holds good copies, not when the data is next needed.
#include <spdlog/spdlog.h>

#include "node/backend_call.h"
#include "node/node.h"
#include "raftnginx/pace.h"
#include "storage/log_store.h"

namespace raftnginx::node {

void Node::scrub_loop() {
  // The first pass soon after start: damage done while the node was down shows at once.
  auto wait = std::chrono::milliseconds(std::min<int64_t>(options_.scrub_interval.count(), 5000));
  for (;;) {
    if (scrub_cancel_.wait_until(std::chrono::steady_clock::now() + wait))
      return;
    wait = options_.scrub_interval;
    Status s = scrub_once();
    if (scrub_cancel_.cancelled())
      return;  // called off: no verdict
    if (s.code() == Status::Code::kCorruption) {
      spdlog::error(
          "scrub: {}; this node serves no reads until it is repaired "
          "(raft-nginx repair, see the README)",
          s.message());
      post([this, s] {
        {
          std::lock_guard lock(status_mu_);
          if (status_.damage.ok())
            status_.damage = s;
        }
        published_damaged_ = true;
        publish_status();
        // A damaged leader hands over: its state is what new members and snapshots copy.
        const raft::NodeId best = cluster::best_transfer_target(core_->status());
        if (best != raft::kNoNode)
          (void)core_->transfer_leadership(best);
      });
    } else if (!s.ok()) {
      spdlog::warn("scrub: could not finish: {}", s.to_string());
    }
    std::lock_guard lock(status_mu_);
    ++status_.scrubs_completed;
  }
}

Status Node::scrub_once() {
  Pace pace(options_.scrub_bytes_per_second, &scrub_cancel_);
  const std::string log_dir =
      options_.log_dir.empty() ? options_.data_dir + "/log" : options_.log_dir;
  if (Status s = storage::LogStore::check_closed_segments(options_.env, log_dir, &pace); !s.ok())
    return s;
  std::vector<storage::SnapshotInfo> sealed;
  {
    std::lock_guard lock(store_mu_);
    sealed = snapshots_->snapshots();
  }
  const auto still_listed = [this](const storage::SnapshotInfo& info) {
    std::lock_guard lock(store_mu_);
    for (const storage::SnapshotInfo& now : snapshots_->snapshots()) {
      if (now.dir == info.dir)
        return true;
    }
    return false;
  };
  for (const storage::SnapshotInfo& info : sealed) {
    Status s = snapshots_->verify(info, &pace);  // a sealed snapshot's files never change
    if (s.code() == Status::Code::kNotFound) {
      if (!still_listed(info))
        continue;  // pruned meanwhile
      return Status::corruption(info.dir +
                                ": a file of this sealed snapshot is gone: " + s.message());
    }
    if (!s.ok())
      return s;
  }
  return backend_call("scrub", [&] { return fsm_->scrub(pace); });
}

}  // namespace raftnginx::node
