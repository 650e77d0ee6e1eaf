#include "http/metrics.h"

#include <fmt/format.h>

namespace raftnginx::http {

namespace {

void write_histogram(std::string* out, const std::string& name, const std::string& labels,
                     const Histogram::Sample& s) {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < Histogram::kBounds.size(); ++i) {
    cumulative += s.counts[i];
    *out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, Histogram::kBounds[i],
                        cumulative);
  }
  cumulative += s.counts.back();
  *out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, cumulative);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  *out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, s.sum_seconds, name, braces,
                      cumulative);
}

void write_metric(std::string* out, const char* name, const char* type, const char* help,
                  uint64_t value) {
  *out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
}

}  // namespace

void Metrics::record_request(const std::string& route, int status,
                             std::chrono::nanoseconds elapsed) {
  std::lock_guard lock(mu_);
  ++requests_[{route, status}];
  auto& histogram = latency_[route];
  if (!histogram)
    histogram = std::make_unique<Histogram>();
  histogram->record(elapsed);
}

void Metrics::add_gauge(std::string name, std::string help, std::string series,
                        std::function<double()> read) {
  std::lock_guard lock(mu_);
  readings_.push_back(
      Reading{"gauge", std::move(name), std::move(help), std::move(series), std::move(read)});
}

void Metrics::add_counter(std::string name, std::string help, std::function<double()> read) {
  std::lock_guard lock(mu_);
  std::string series = name;
  readings_.push_back(
      Reading{"counter", std::move(name), std::move(help), std::move(series), std::move(read)});
}

std::string Metrics::render(const node::NodeStatus& st, const Histogram& sync_latency) const {
  std::string out;
  {
    std::lock_guard lock(mu_);
    out +=
        "# HELP raftnginx_http_requests_total HTTP requests answered, by route and status.\n"
        "# TYPE raftnginx_http_requests_total counter\n";
    for (const auto& [key, count] : requests_) {
      out += fmt::format("raftnginx_http_requests_total{{route=\"{}\",code=\"{}\"}} {}\n",
                         key.first, key.second, count);
    }
    out +=
        "# HELP raftnginx_http_request_duration_seconds Time to answer, by route.\n"
        "# TYPE raftnginx_http_request_duration_seconds histogram\n";
    for (const auto& [route, histogram] : latency_) {
      write_histogram(&out, "raftnginx_http_request_duration_seconds",
                      fmt::format("route=\"{}\"", route), histogram->sample());
    }
  }
  out +=
      "# HELP raftnginx_log_sync_duration_seconds Time to write and fsync a log batch.\n"
      "# TYPE raftnginx_log_sync_duration_seconds histogram\n";
  write_histogram(&out, "raftnginx_log_sync_duration_seconds", "", sync_latency.sample());
  write_metric(&out, "raftnginx_term", "gauge", "Current Raft term.", st.raft.hard_state.term);
  write_metric(&out, "raftnginx_is_leader", "gauge", "1 if this node leads.",
               st.raft.role == raft::Role::kLeader ? 1 : 0);
  out +=
      "# HELP raftnginx_role This node's role (1 for the current one).\n"
      "# TYPE raftnginx_role gauge\n";
  for (const char* role : {"leader", "follower", "candidate", "learner"}) {
    const bool current = std::string_view(role) == node::role_label(st.raft);
    out += fmt::format("raftnginx_role{{role=\"{}\"}} {}\n", role, current ? 1 : 0);
  }
  write_metric(&out, "raftnginx_commit_index", "gauge", "Highest log index known committed.",
               st.raft.hard_state.commit);
  write_metric(&out, "raftnginx_applied_index", "gauge", "Highest log index applied here.",
               st.applied);
  write_metric(&out, "raftnginx_last_log_index", "gauge", "Last index in this node's log.",
               st.raft.last_index);
  write_metric(&out, "raftnginx_snapshot_index", "gauge", "Index of the latest snapshot.",
               st.snapshot_index);
  write_metric(&out, "raftnginx_fsm_applied_entries_total", "counter",
               "Commands handed to the state machine since the process started.",
               st.entries_applied);
  write_metric(&out, "raftnginx_snapshots_taken_total", "counter", "Snapshots taken here.",
               st.snapshots_taken);
  write_metric(&out, "raftnginx_snapshots_installed_total", "counter",
               "Snapshots received from a leader and installed.", st.snapshots_installed);
  write_metric(&out, "raftnginx_leader_changes_total", "counter",
               "Times this node saw a new leader.", st.leader_changes);
  write_metric(&out, "raftnginx_members", "gauge", "Members in the configuration.",
               st.raft.conf.voters.size() + st.raft.conf.learners.size());
  write_metric(&out, "raftnginx_sessions", "gauge", "Client request ids remembered.", st.sessions);
  out +=
      "# HELP raftnginx_protocol_violations_total Messages from peers that broke the protocol "
      "and were dropped, by kind.\n"
      "# TYPE raftnginx_protocol_violations_total counter\n";
  for (const auto& [kind, count] : st.protocol_violations)
    out += fmt::format("raftnginx_protocol_violations_total{{kind=\"{}\"}} {}\n", kind, count);
  std::lock_guard lock(mu_);
  std::string previous;
  for (const Reading& r : readings_) {
    if (r.name != previous)
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", r.name, r.help, r.name, r.type);
    previous = r.name;
    out += fmt::format("{} {}\n", r.series, r.read());
  }
  return out;
}

}  // namespace raftnginx::http
