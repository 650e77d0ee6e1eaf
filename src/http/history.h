// History: what the status page (/ui/) charts and lists, kept by the daemon itself, in memory:
// per second, the key-value requests this node answered (reads and writes, errors among them)
// and their latencies, for the last kSeconds; and the last kEvents elections and membership
// changes it saw. Nothing survives a restart.
//
// Threads: record() from the server threads, on_status() from the raft loop, to_json() from any;
// one mutex, held briefly (a request costs a few additions).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <set>
#include <string>
#include <vector>

#include "node/node.h"

namespace raftnginx::http {

class History {
 public:
  static constexpr size_t kSeconds = 600;
  static constexpr size_t kEvents = 100;

  // `now_ms`: the wall clock, in ms since the Unix epoch (tests give their own).
  explicit History(std::function<int64_t()> now_ms = wall_clock_ms) : now_ms_(std::move(now_ms)) {}
  static int64_t wall_clock_ms();

  // One answered request of a backend route: a read (GET) or a write, its status, how long.
  void record(bool write, int status, std::chrono::steady_clock::duration took);
  // The node's applied index now (sampled a few times a second): what every member applies is
  // every write the cluster committed, so any member charts the cluster's write rate.
  void note_applied(raft::Index applied);
  // The node's status after a change (Node::observe): a new leader or term, or new members,
  // become events.
  void on_status(const node::NodeStatus& st);
  // {"now_ms", "seconds": [{"t", "applied" (entries applied in that second), "reads", "writes",
  // "errors",
  //   "read_p50_ms", "read_p99_ms",
  //   "write_p50_ms", "write_p99_ms"}...], oldest first, whole seconds only;
  //  "events": [{"t", "kind": "leader"|"members", "term", "leader", "members"}...]}, with t in
  //  seconds (events: milliseconds) since the Unix epoch. Seconds up to the last whole one are
  //  listed, quiet ones too.
  nlohmann::json to_json();

 private:
  // Latencies in buckets of powers of two microseconds: enough for p50 and p99 within 2x.
  struct Latencies {
    std::array<uint32_t, 32> buckets{};
    uint64_t count = 0;
    void add(std::chrono::steady_clock::duration took);
    double percentile_ms(double p) const;
  };
  struct Second {
    int64_t t = 0;
    raft::Index applied = 0;  // the highest applied index seen in it (0: none)
    uint64_t errors = 0;
    Latencies reads;
    Latencies writes;
  };
  struct Event {
    int64_t t_ms = 0;
    std::string kind;
    uint64_t term = 0;
    raft::NodeId leader = raft::kNoNode;
    std::vector<std::string> members;
  };
  // Moves `current_` into the past if its second is over (and records quiet seconds between).
  void roll(int64_t now_s);
  void add_event(Event e);

  const std::function<int64_t()> now_ms_;
  mutable std::mutex mu_;
  Second current_;
  std::deque<Second> past_;
  std::deque<Event> events_;
  raft::Index last_applied_ = 0;  // the latest note_applied()
  raft::NodeId leader_ = raft::kNoNode;
  uint64_t term_ = 0;
  std::set<std::string> members_;
  // Every member's name as last seen: a leader may be known before its record (a new node hears
  // from its leader before it applies the change that names it).
  std::map<raft::NodeId, std::string> names_;
};

}  // namespace raftnginx::http
