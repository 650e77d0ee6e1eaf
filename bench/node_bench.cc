// Committed writes through a real 3-node cluster: TCP on loopback, the RocksDB backend, every
// Ready fsynced. Each writer proposes on the leader and waits for its write to be applied
// before sending the next; throughput and commit latency per number of concurrent writers.
//
//   build/bench/node_bench --writers 1,16,64 --seconds 5
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <future>
#include <thread>

#include "fsm/kv_command.h"
#include "fsm/rocksdb_kv.h"
#include "node/node.h"
#include "transport/tcp_transport.h"

namespace raftnginx {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Cluster {
  std::vector<std::unique_ptr<transport::TcpTransport>> transports;
  std::vector<std::unique_ptr<node::Node>> nodes;

  Cluster(const std::string& dir, uint64_t snapshot_threshold) {
    std::map<raft::NodeId, std::string> contexts;
    for (raft::NodeId id = 1; id <= 3; ++id) {
      transport::TcpTransportOptions o;
      o.listen = "127.0.0.1:0";
      transports.push_back(std::move(transport::TcpTransport::start(o)).value());
      contexts[id] = "raft=127.0.0.1:" + std::to_string(transports.back()->port());
    }
    for (raft::NodeId id = 1; id <= 3; ++id) {
      node::NodeOptions o;
      o.id = id;
      o.data_dir = dir + "/node" + std::to_string(id);
      o.bootstrap = cluster::Membership::from(raft::ConfState{{1, 2, 3}, {}}, contexts);
      o.snapshot_threshold = snapshot_threshold;
      std::filesystem::create_directories(o.data_dir);
      auto kv = std::move(fsm::RocksDbKv::open(o.data_dir + "/kv")).value();
      nodes.push_back(
          std::move(node::Node::start(o, std::move(kv), transports[id - 1].get())).value());
    }
  }

  node::Node* leader() {
    for (int i = 0; i < 500; ++i) {
      for (auto& n : nodes) {
        if (n->status().raft.role == raft::Role::kLeader)
          return n.get();
      }
      std::this_thread::sleep_for(10ms);
    }
    return nullptr;
  }
};

void run(int writers, double seconds, size_t value_bytes, uint64_t snapshot_threshold,
         const std::string& dir) {
  std::filesystem::remove_all(dir);
  Cluster cluster(dir, snapshot_threshold);
  node::Node* leader = cluster.leader();
  if (!leader) {
    std::fprintf(stderr, "no leader\n");
    return;
  }
  std::atomic<bool> running{true};
  std::vector<std::vector<double>> latencies(static_cast<size_t>(writers));
  std::atomic<uint64_t> errors{0};
  std::vector<std::thread> threads;
  const std::string value(value_bytes, 'v');
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      for (uint64_t i = 0; running; ++i) {
        fsm::KvCommand put;
        put.success.push_back(fsm::KvOp{
            fsm::KvOp::Kind::kPut, "w" + std::to_string(w) + "-" + std::to_string(i), value, 0});
        const std::string cmd = fsm::encode_kv_command(put);
        std::promise<bool> done;
        const auto start = Clock::now();
        leader->propose(cmd, {}, [&](Result<Outcome> r) { done.set_value(r.ok()); });
        if (!done.get_future().get()) {
          ++errors;
          continue;
        }
        latencies[static_cast<size_t>(w)].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
    });
  }
  const auto begin = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  running = false;
  for (auto& t : threads)
    t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  std::vector<double> all;
  for (auto& l : latencies)
    all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0 : all[static_cast<size_t>(p * (all.size() - 1))];
  };
  uint64_t snapshots = 0;
  for (auto& n : cluster.nodes)
    snapshots += n->status().snapshots_taken;
  std::printf("| %d | %.0f | %.2f | %.2f | %.2f | %llu | %llu |\n", writers, all.size() / elapsed,
              pct(0.5), pct(0.99), pct(0.999), static_cast<unsigned long long>(errors.load()),
              static_cast<unsigned long long>(snapshots));
  std::fflush(stdout);
}

}  // namespace
}  // namespace raftnginx

int main(int argc, char** argv) {
  CLI::App app{
      "Committed writes/s and latency of a 3-node raft-nginx cluster (TCP, RocksDB, fsync)."};
  std::vector<int> writers{1, 16, 64};
  double seconds = 5;
  size_t value_bytes = 64;
  std::string dir = "/tmp/raftnginx-node-bench";
  uint64_t snapshot_threshold = 8192;
  app.add_option("--writers", writers, "concurrent writers, one run each")->delimiter(',');
  app.add_option("--seconds", seconds, "duration of each run");
  app.add_option("--value-bytes", value_bytes, "bytes per value");
  app.add_option("--dir", dir, "scratch directory (wiped)");
  app.add_option("--snapshot-threshold", snapshot_threshold, "entries between snapshots");
  CLI11_PARSE(app, argc, argv);
  std::printf(
      "| writers | writes/s | p50 ms | p99 ms | p99.9 ms | errors | snapshots |\n"
      "|---|---|---|---|---|---|---|\n");
  for (int w : writers)
    raftnginx::run(w, seconds, value_bytes, snapshot_threshold, dir);
  std::filesystem::remove_all(dir);
  return 0;
}
