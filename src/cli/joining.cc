#include "cli/joining.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "util/printable.h"

namespace raftnginx::cli {

using namespace std::chrono_literals;

Result<std::string> join_cluster(http::Client* client, const DaemonOptions& options,
                                 const std::string& cluster_id, const std::string& authorization,
                                 const std::atomic<bool>* stop) {
  nlohmann::json request_body{{"id", options.id},
                              {"addr", options.raft_advertise},
                              {"http_addr", options.http_advertise},
                              {"voter", !options.learner},
                              {"replace", true}};
  if (!cluster_id.empty())
    request_body["cluster_id"] = cluster_id;
  const std::string body = request_body.dump();
  auto backoff = 200ms;
  std::string target = options.join;
  for (int attempt = 1; !*stop; ++attempt) {
    http::Request request;
    request.method = "POST";
    request.target = "/join";
    request.headers.emplace_back("Content-Type", "application/json");
    if (!authorization.empty())
      request.headers.emplace_back("Authorization", authorization);
    request.body = body;
    auto r = client->fetch(target, std::move(request), 5s);
    const auto answer = r.ok() ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json();
    const bool names_cluster =
        answer.is_object() && answer.contains("cluster_id") && answer["cluster_id"].is_string();
    if (r.ok() && r->status == 200) {
      spdlog::info("joined the cluster through {}", target);
      return names_cluster ? answer["cluster_id"].get<std::string>() : options.cluster_name;
    }
    if (r.ok() && r->status == 409 && names_cluster)
      return Status::invalid_argument("join through " + target +
                                      " refused: " + printable(r->body, 512));
    if (r.ok() && r->status == 307 && !r->header("X-Raft-Leader").empty() &&
        r->header("X-Raft-Leader") != target) {
      target = std::string(r->header("X-Raft-Leader"));
      continue;  // ask the leader right away
    }
    const std::string why =
        r.ok() ? "HTTP " + std::to_string(r->status) + " " + r->body : r.status().message();
    spdlog::warn("join through {} failed (attempt {}): {}; retrying in {} ms", target, attempt, why,
                 backoff.count());
    target = options.join;
    for (auto waited = 0ms; waited < backoff && !*stop; waited += 50ms)
      std::this_thread::sleep_for(50ms);
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5s);
  }
  return Status::unavailable("stopped before joining");
}

bool wait_for_peers(http::Client* client, const DaemonOptions& options,
                    const std::atomic<bool>* stop) {
  for (int round = 0; !*stop; ++round) {
    size_t up = 1;  // this node
    for (const Peer& peer : options.peers) {
      if (peer.id == options.id)
        continue;
      http::Request probe;
      probe.method = "GET";
      probe.target = "/healthz";
      auto r = client->fetch(peer.http_address, std::move(probe), 1s);
      // A peer that accepts the connection is up, even though it does not answer before the
      // cluster forms; only a refused or unresolvable address means down.
      if (r.ok() || !r.status().message().starts_with("cannot"))
        ++up;
    }
    if (up >= options.bootstrap_expect) {
      spdlog::info("{} of {} expected nodes are up: forming the cluster", up,
                   options.bootstrap_expect);
      return true;
    }
    if (round % 10 == 0) {
      spdlog::info("waiting for nodes to form the cluster: {} of {} up", up,
                   options.bootstrap_expect);
    }
    std::this_thread::sleep_for(500ms);
  }
  return false;
}

}  // namespace raftnginx::cli
