// The deterministic cluster simulator: raft cores, a simulated network, disk and clock, a fault
// schedule, and invariant checks after every event. One seed decides everything that happens, so
// a failing seed replays exactly (FoundationDB-style simulation, scaled down to the core).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace raftnginx::raft::sim {

struct SimOptions {
  uint64_t seed = 1;
  int nodes = 3;  // initial voters: 3, 5 or 7
  // Events in the fault phase; then every fault heals and liveness is checked.
  uint64_t fault_events = 30000;
  // Simulated time allowed after healing for a leader to be elected and a write to commit.
  uint64_t liveness_ms = 15000;
  // Print every event.
  bool trace = false;
  // Also inject forged messages that break the protocol (from members and strangers), each of
  // which must be refused: nothing a peer sends may abort a node or slip past the checks.
  bool forge = false;
};

struct SimResult {
  uint64_t events = 0;
  uint64_t committed = 0;  // entries committed
  uint64_t faults = 0;     // faults injected
  uint64_t elections = 0;  // leaders elected
  uint64_t reads = 0;      // ReadIndex reads served and checked
  uint64_t snapshots = 0;  // snapshots installed from a leader
  // Crashes inside the pipeline's window: after early sends or applies, before the write.
  uint64_t window_crashes = 0;
  uint64_t forged = 0;  // forged messages injected, every one refused
  std::vector<std::string> violations;
};

SimResult run_simulation(const SimOptions& options,
                         const std::function<void(const std::string&)>& trace_sink = {});

}  // namespace raftnginx::raft::sim
