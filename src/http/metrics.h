// Metrics: what /metrics exposes, in Prometheus text format, every name prefixed raftnginx_.
// Request counters and latencies are recorded here by the API; the node's gauges and counters
// are read from its status when scraped.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "node/node.h"
#include "util/histogram.h"

namespace raftnginx::http {

class Metrics {
 public:
  void record_request(const std::string& route, int status, std::chrono::nanoseconds elapsed);
  // A gauge read when scraped: `series` is the name with its labels, e.g.
  // raftnginx_tls_certificate_expiry_timestamp_seconds{port="raft"}.
  void add_gauge(std::string name, std::string help, std::string series,
                 std::function<double()> read);
  // A counter (no labels) read when scraped.
  void add_counter(std::string name, std::string help, std::function<double()> read);
  std::string render(const node::NodeStatus& status, const Histogram& sync_latency) const;

 private:
  struct Reading {
    const char* type;  // "gauge" or "counter"
    std::string name;
    std::string help;
    std::string series;
    std::function<double()> read;
  };
  std::vector<Reading> readings_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, std::unique_ptr<Histogram>> latency_;  // by route
};

}  // namespace raftnginx::http
