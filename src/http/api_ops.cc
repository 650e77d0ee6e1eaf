// Operational routes: /status, /nodes, /metrics, /readyz, /healthz.
#include "http/api.h"
#include "http/api_json.h"
#include "util/duration.h"

namespace raftnginx::http {

using Clock = std::chrono::steady_clock;

void Api::metrics(const CallPtr& call) {
  Response r;
  r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
  r.body = metrics_.render(node_->status(), node_->sync_latency());
  call->answer(std::move(r));
}

void Api::healthz(const CallPtr& call) {
  call->answer(Response::json(200, json{{"status", "ok"}}));
}

void Api::status(const CallPtr& call) {
  const node::NodeStatus st = node_->status();
  json members = json::array();
  std::map<raft::NodeId, const raft::PeerStatus*> progress;
  for (const raft::PeerStatus& p : st.raft.peers)
    progress[p.id] = &p;
  auto add = [&](raft::NodeId id) {
    json m = member_json(id, st);
    if (auto p = progress.find(id); p != progress.end()) {
      m["match_index"] = p->second->match_index;
      m["lag"] = st.raft.last_index - std::min(st.raft.last_index, p->second->match_index);
    }
    members.push_back(std::move(m));
  };
  for (raft::NodeId id : st.membership.conf.voters)
    add(id);
  for (raft::NodeId id : st.membership.conf.learners)
    add(id);
  json leader = nullptr;
  if (st.raft.leader != raft::kNoNode) {
    json l = member_json(st.raft.leader, st);
    l.erase("voter");
    leader = std::move(l);
  }
  json body{{"id", options_.self_name},
            {"role", node::role_label(st.raft)},
            {"term", st.raft.hard_state.term},
            {"leader", leader},
            {"commit_index", st.raft.hard_state.commit},
            {"applied_index", st.applied},
            {"last_log_index", st.raft.last_index},
            {"snapshot_index", st.snapshot_index},
            {"backend", node_->state_machine().name()},
            {"members", members},
            {"last_contact_ms",
             std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - st.leader_contact)
                 .count()},
            {"entries_applied", st.entries_applied},
            {"sessions", st.sessions},
            {"auth", options_.auth != nullptr},
            {"insecure", options_.insecure},
            {"snapshots_taken", st.snapshots_taken},
            {"snapshots_installed", st.snapshots_installed}};
  if (!st.failure.ok())
    body["failure"] = st.failure.to_string();
  call->answer(Response::json(200, body));
}

void Api::nodes(const CallPtr& call) {
  const node::NodeStatus st = node_->status();
  std::vector<raft::NodeId> ids(st.membership.conf.voters.begin(), st.membership.conf.voters.end());
  ids.insert(ids.end(), st.membership.conf.learners.begin(), st.membership.conf.learners.end());
  struct Gather {
    std::mutex mu;
    json members = json::array();
    size_t pending;
  };
  if (ids.empty())
    return call->answer(Response::json(200, json::array()));  // not in a cluster yet
  auto gather = std::make_shared<Gather>();
  gather->pending = ids.size();
  auto add = [call, gather](json m, bool reachable) {
    std::lock_guard lock(gather->mu);
    m["reachable"] = reachable;
    gather->members.push_back(std::move(m));
    if (--gather->pending == 0)
      call->answer(Response::json(200, gather->members));
  };
  for (raft::NodeId id : ids) {
    json m = member_json(id, st);
    const std::string http_addr = m["http_addr"];
    if (id == st.raft.id) {
      add(std::move(m), true);
    } else if (http_addr.empty()) {
      add(std::move(m), false);
    } else {
      Request probe;
      probe.method = "GET";
      probe.target = "/healthz";
      client_->fetch(http_addr, std::move(probe), std::chrono::milliseconds(1000),
                     [add, m = std::move(m)](Result<Response> r) mutable {
                       add(std::move(m), r.ok() && r->status == 200);
                     });
    }
  }
}

void Api::readyz(const CallPtr& call) {
  auto not_ready = [call](const std::string& why) {
    call->answer(Response::json(503, json{{"ready", false}, {"error", why}}));
  };
  const node::NodeStatus st = node_->status();
  if (!st.failure.ok())
    return not_ready(st.failure.to_string());
  if (options_.readiness) {
    if (Status s = options_.readiness(); !s.ok())
      return not_ready(s.message());
  }
  if (call->query.count("sync") == 0) {
    if (st.raft.leader == raft::kNoNode)
      return not_ready("no leader is known");
    if (st.applied < st.raft.hard_state.commit)
      return not_ready("applying the log: " + std::to_string(st.applied) + " of " +
                       std::to_string(st.raft.hard_state.commit));
    return call->answer(Response::json(200, json{{"ready", true}}));
  }
  std::chrono::milliseconds timeout{5000};
  if (auto t = call->query.find("timeout"); t != call->query.end()) {
    auto parsed = parse_duration(t->second, std::chrono::minutes(10));
    if (!parsed.ok())
      return call->answer(Response::error(400, "timeout: " + parsed.status().message()));
    timeout = *parsed;
  }
  server_->after(timeout, [call, not_ready] {
    if (!call->done())
      not_ready("not caught up with the leader within the timeout");
  });
  node_->read_barrier([call, not_ready](Status s) {
    if (!s.ok())
      return not_ready(s.message());
    call->answer(Response::json(200, json{{"ready", true}}));
  });
}

}  // namespace raftnginx::http
