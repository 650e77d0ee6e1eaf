// How fast the consensus core alone commits: a 3-node cluster in one thread, in-memory storage,
// messages handed over directly. No disk, no network: this bounds what the core itself costs.
//
//   build/bench/raft_core_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <vector>

#include "raft/memory_storage.h"
#include "raft/raw_node.h"

namespace raftnginx::raft {
namespace {

class Cluster {
 public:
  Cluster() {
    ConfState conf{{1, 2, 3}, {}};
    for (NodeId id : conf.voters) {
      auto& n = nodes_[id];
      n.storage = std::make_unique<MemoryStorage>(conf);
      Config c;
      c.id = id;
      c.random_seed = id;
      n.core = std::move(RawNode::create(c, *n.storage)).value();
    }
    run();  // applies the bootstrap membership
    nodes_.at(1).core->campaign();
    run();
  }

  RawNode& leader() { return *nodes_.at(1).core; }
  uint64_t applied() const { return applied_; }

  // Handles Readies and delivers messages until the cluster is quiet.
  void run() {
    bool busy = true;
    while (busy) {
      busy = false;
      for (auto& [id, n] : nodes_) {
        if (!n.core->has_ready())
          continue;
        busy = true;
        Ready rd = n.core->ready();
        n.storage->append(rd.entries);
        if (rd.hard_state)
          n.storage->set_hard_state(*rd.hard_state);
        for (Message& m : rd.messages)
          inbox_.push_back(std::move(m));
        if (id == 1)
          applied_ += rd.committed_entries.size();
        if (!rd.committed_entries.empty())
          n.applied = rd.committed_entries.back().index;
        n.core->advance();
        // Keep memory flat: compact what has been applied.
        if (n.applied > n.storage->first_index() + 4096) {
          (void)n.storage->create_snapshot(n.applied - 1024, n.core->conf());
        }
      }
      std::vector<Message> batch;
      batch.swap(inbox_);
      for (Message& m : batch) {
        busy = true;
        (void)nodes_.at(m.to).core->step(std::move(m));
      }
    }
  }

 private:
  struct Node {
    std::unique_ptr<MemoryStorage> storage;
    std::unique_ptr<RawNode> core;
    Index applied = 0;
  };
  std::map<NodeId, Node> nodes_;
  std::vector<Message> inbox_;
  uint64_t applied_ = 0;
};

// Proposals per round (between two Ready cycles): 1 is a client at a time, larger values are
// what group commit in the runtime produces under load.
void BM_CommitThreeNodes(benchmark::State& state) {
  const auto batch = static_cast<size_t>(state.range(0));
  const std::string payload(64, 'x');
  Cluster cluster;
  const uint64_t start = cluster.applied();
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) {
      if (!cluster.leader().propose(payload).ok())
        state.SkipWithError("proposal refused");
    }
    cluster.run();
  }
  const auto committed = static_cast<double>(cluster.applied() - start);
  state.counters["entries/s"] = benchmark::Counter(committed, benchmark::Counter::kIsRate);
  state.SetItemsProcessed(static_cast<int64_t>(committed));
}
BENCHMARK(BM_CommitThreeNodes)->Arg(1)->Arg(16)->Arg(256)->Arg(1024);

}  // namespace
}  // namespace raftnginx::raft

BENCHMARK_MAIN();
