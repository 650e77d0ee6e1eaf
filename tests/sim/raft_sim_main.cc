// raft-sim: runs the deterministic cluster simulator over many seeds.
//
//   raft-sim --seeds 20000 --nodes 5     many seeds; exits 1 on the first violation
//   raft-sim --seed 1234 --nodes 3 --trace    replay one seed with a readable trace
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "simulator.h"

namespace {

// Written before each seed so that a crash inside the core still names the seed to replay.
char g_crash_note[256];

void on_abort(int) {
  ssize_t ignored = write(STDERR_FILENO, g_crash_note, strlen(g_crash_note));
  (void)ignored;
  signal(SIGABRT, SIG_DFL);
  raise(SIGABRT);
}

}  // namespace

int main(int argc, char** argv) {
  using raftnginx::raft::sim::SimOptions;
  CLI::App app{
      "Deterministic Raft cluster simulator: faults, invariants after every event, liveness after "
      "healing."};
  uint64_t seeds = 1;
  uint64_t first_seed = 1;
  uint64_t seed = 0;
  SimOptions opt;
  app.add_option("--seeds", seeds, "number of seeds to run")->check(CLI::PositiveNumber);
  app.add_option("--first-seed", first_seed, "first seed of the range")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "run exactly this seed (replay)");
  app.add_option("--nodes", opt.nodes, "initial voters")->check(CLI::IsMember({3, 5, 7}));
  app.add_option("--events", opt.fault_events, "events in the fault phase of each seed")
      ->check(CLI::PositiveNumber);
  app.add_flag("--trace", opt.trace, "print every event of the run");
  app.add_flag("--forge", opt.forge,
               "also inject forged messages that break the protocol; each must be refused");
  CLI11_PARSE(app, argc, argv);
  if (seed != 0) {
    first_seed = seed;
    seeds = 1;
  }

  signal(SIGABRT, on_abort);
  uint64_t events = 0;
  uint64_t committed = 0;
  uint64_t faults = 0;
  uint64_t reads = 0;
  uint64_t snapshots = 0;
  uint64_t window_crashes = 0;
  uint64_t forged = 0;
  uint64_t violations = 0;
  uint64_t ran = 0;
  for (uint64_t s = first_seed; s < first_seed + seeds; ++s) {
    opt.seed = s;
    snprintf(g_crash_note, sizeof g_crash_note,
             "\nraft-sim: the core aborted on seed %llu; replay: raft-sim --seed %llu --nodes %d "
             "--events %llu --trace\n",
             static_cast<unsigned long long>(s), static_cast<unsigned long long>(s), opt.nodes,
             static_cast<unsigned long long>(opt.fault_events));
    auto result = raftnginx::raft::sim::run_simulation(
        opt, [](const std::string& line) { std::cout << line << '\n'; });
    ++ran;
    events += result.events;
    committed += result.committed;
    faults += result.faults;
    reads += result.reads;
    snapshots += result.snapshots;
    window_crashes += result.window_crashes;
    forged += result.forged;
    if (!result.violations.empty()) {
      violations += result.violations.size();
      std::cout << "seed " << s << ": " << result.violations.front() << "\n"
                << "replay: raft-sim --seed " << s << " --nodes " << opt.nodes << " --events "
                << opt.fault_events << (opt.forge ? " --forge" : "") << " --trace\n";
      break;
    }
  }
  std::cout << "nodes=" << opt.nodes << " committed=" << committed << " faults=" << faults
            << " reads=" << reads << " snapshots=" << snapshots
            << " window_crashes=" << window_crashes << " forged=" << forged << "\n";
  std::cout << "seeds=" << ran << " events=" << events << " violations=" << violations << std::endl;
  return violations == 0 ? 0 : 1;
}
