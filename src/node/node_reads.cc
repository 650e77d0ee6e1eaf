// Linearizable reads: ReadIndex rounds, batched so that one heartbeat round confirms many.
#include "node/node.h"

namespace raftnginx::node {

void Node::read_barrier(StatusCallback done) {
  submit(std::move(done), [this](StatusCallback& done) {
    if (reads_to_issue_.reads.empty())
      reads_to_issue_.issued_tick = ticks_;  // for expiry while it waits for its round
    reads_to_issue_.reads.push_back(std::move(done));
  });
}

void Node::fail_reads(ReadBatch& batch, const Status& why) {
  for (StatusCallback& done : std::exchange(batch.reads, {}))
    done(why);
}

void Node::issue_reads() {
  if (reads_to_issue_.reads.empty() || !reads_waiting_index_.empty() || !failure_.ok())
    return;
  std::string ctx = std::to_string(++next_read_id_);
  if (Status s = core_->read_index(ctx); !s.ok())
    return fail_reads(reads_to_issue_, s);
  ReadBatch batch = std::exchange(reads_to_issue_, {});
  batch.issued_tick = ticks_;
  reads_waiting_index_.emplace(std::move(ctx), std::move(batch));
}

void Node::expire_reads() {
  // A ReadIndex request or its answer can be lost on the way (the core never answers twice):
  // after two election timeouts the client is told to retry.
  const uint64_t limit = 2 * static_cast<uint64_t>(options_.election_ticks);
  const Status why = Status::unavailable("no answer from the leader for the read; retry");
  for (auto it = reads_waiting_index_.begin(); it != reads_waiting_index_.end();) {
    if (ticks_ - it->second.issued_tick < limit) {
      ++it;
      continue;
    }
    fail_reads(it->second, why);
    it = reads_waiting_index_.erase(it);
  }
  if (ticks_ - reads_to_issue_.issued_tick >= limit)
    fail_reads(reads_to_issue_, why);
}

void Node::serve_reads() {
  while (!reads_waiting_apply_.empty() && reads_waiting_apply_.begin()->first <= applied_) {
    auto done = std::move(reads_waiting_apply_.begin()->second);
    reads_waiting_apply_.erase(reads_waiting_apply_.begin());
    done(Status());
  }
}

}  // namespace raftnginx::node
