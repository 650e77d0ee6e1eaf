// Operational routes: /status, /nodes, /metrics, /readyz, /healthz.
#include "http/api.h"
#include "http/api_json.h"
#include "util/duration.h"

#include <charconv>

namespace raftnginx::http {

using Clock = std::chrono::steady_clock;

void Api::metrics(const CallPtr& call) {
  Response r;
  r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
  r.body = metrics_.render(node_->status(), node_->sync_latency());
  call->answer(std::move(r));
}

namespace {

// What /healthz and /nodes tell of a gateway: the index of the files it serves, and the file it
// refused, if any; rebuilt field by field, since a peer's answer is as hostile as any.
json gateway_brief(const json& gateway) {
  json brief = json::object();
  if (!gateway.is_object())
    return brief;
  if (auto index = gateway.find("files_index");
      index != gateway.end() && index->is_number_unsigned())
    brief["files_index"] = *index;
  auto refused = gateway.find("refused");
  if (refused != gateway.end() && refused->is_object()) {
    auto key = refused->find("key");
    auto index = refused->find("index");
    if (key != refused->end() && key->is_string() &&
        key->get_ref<const std::string&>().size() <= 256 && index != refused->end() &&
        index->is_number_unsigned())
      brief["refused"] = json{{"key", *key}, {"index", *index}};
  }
  return brief;
}

// What /nodes shows of a voter's own /status, field by field: a peer's answer is as hostile as
// any, so only numbers and a known role are taken.
void add_peer_view(json& m, const json& status) {
  if (!status.is_object())
    return;
  for (const char* field : {"term", "commit_index", "applied_index", "last_contact_ms"}) {
    if (auto v = status.find(field); v != status.end() && v->is_number_unsigned())
      m[field] = *v;
  }
  if (auto role = status.find("role"); role != status.end() && role->is_string()) {
    const std::string r = role->get<std::string>();
    if (r == "leader" || r == "follower" || r == "candidate" || r == "learner")
      m["role"] = r;
  }
}

}  // namespace

void Api::healthz(const CallPtr& call) {
  json body{{"status", "ok"}};
  if (options_.gateway_status) {
    body["gateway"] = gateway_brief(options_.gateway_status());
  }
  call->answer(Response::json(200, body));
}

namespace {

json verdict_json(const ReplicaVerdict& v) {
  json peers = json::object();
  for (const auto& [name, hash] : v.peers)
    peers[name] = hash.ok() ? json(hash_hex(*hash)) : json{{"error", hash.status().message()}};
  return json{{"index", v.index},
              {"hash", hash_hex(v.hash)},
              {"peers", peers},
              {"mismatched", v.mismatched},
              {"diverged", v.diverged}};
}

}  // namespace

// With ?verify (on the leader): a replica check now, its verdict in the answer.
void Api::status(const CallPtr& call) {
  if (call->params.count("verify") == 0)
    return call->answer(Response::json(200, status_json()));
  if (options_.replica_check == nullptr)
    return call->answer(Response::error(501, "replica checks are off on this node"));
  if (node_->status().raft.role != raft::Role::kLeader)
    return not_leader(call);
  deadline(call, Expiry::kNotDone, "the replica check did not finish in time");
  options_.replica_check->verify_now([this, call](Result<ReplicaVerdict> v) {
    if (!v.ok())
      return fail(call, v.status());
    json body = status_json();
    body["replica_check"] = verdict_json(*v);
    call->answer(Response::json(200, body));
  });
}

// A node's state hash at a checkpoint it applied: 503 before it applied it, 404 if it took
// none there.
void Api::hash(const CallPtr& call) {
  auto index_it = call->params.find("index");
  if (index_it == call->params.end())
    return call->answer(Response::error(400, "hash needs ?index=<checkpoint index>"));
  uint64_t index = 0;
  const std::string& text = index_it->second;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), index);
  if (ec != std::errc() || end != text.data() + text.size())
    return call->answer(Response::error(400, "index must be a number"));
  if (std::optional<uint64_t> h = node_->checkpoint_hash(index))
    return call->answer(Response::json(200, json{{"index", index}, {"hash", hash_hex(*h)}}));
  if (node_->applied_index() < index)
    return call->answer(Response::unavailable("checkpoint " + text + " is not applied here yet"));
  call->answer(Response::error(404, "no state hash at " + text + " on this node"));
}

json Api::status_json() const {
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
            {"cluster_id", cluster_id()},
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
  const storage::LogRecovery& recovered = st.log_recovery;
  json log{{"records_replayed", recovered.records}};
  if (!recovered.torn_segment.empty()) {
    log["torn_write_cut"] = json{{"segment", recovered.torn_segment},
                                 {"offset", recovered.torn_offset},
                                 {"bytes", recovered.torn_bytes},
                                 {"records", recovered.dropped_records},
                                 {"reason", recovered.torn_reason}};
  }
  body["log_at_start"] = std::move(log);
  json integrity{{"scrubs_completed", st.scrubs_completed}};
  if (!st.damage.ok())
    integrity["damage"] = st.damage.message();
  if (options_.replica_check != nullptr) {
    if (std::optional<ReplicaVerdict> v = options_.replica_check->last())
      integrity["replica_check"] = verdict_json(*v);
  }
  if (std::optional<std::string> why = integrity_problem())
    integrity["serving_reads"] = false;
  body["integrity"] = std::move(integrity);
  if (options_.gateway_status)
    body["gateway"] = options_.gateway_status();
  return body;
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
  std::vector<std::string> mismatched;
  if (options_.replica_check != nullptr) {
    if (std::optional<ReplicaVerdict> v = options_.replica_check->last())
      mismatched = v->mismatched;
  }
  for (raft::NodeId id : ids) {
    json m = member_json(id, st);
    m["hash_mismatch"] =
        std::find(mismatched.begin(), mismatched.end(), m["id"]) != mismatched.end();
    const std::string http_addr = m["http_addr"];
    if (id == st.raft.id) {
      m["role"] = node::role_label(st.raft);
      m["term"] = st.raft.hard_state.term;
      m["commit_index"] = st.raft.hard_state.commit;
      m["applied_index"] = st.applied;
      m["last_contact_ms"] =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - st.leader_contact)
              .count();
      if (options_.gateway_status)
        m["gateway"] = gateway_brief(options_.gateway_status());
      add(std::move(m), true);
    } else if (http_addr.empty()) {
      add(std::move(m), false);
    } else {
      // Reachable, and its gateway: /healthz, which needs no credentials. A voter's own view
      // (role, indexes) then comes from its /status, asked with this node's credentials, which
      // go to voters only (an admin made each one), as the replica checks' do.
      const bool voter = st.membership.conf.voters.count(id) > 0;
      Request probe;
      probe.method = "GET";
      probe.target = "/healthz";
      client_->fetch(http_addr, std::move(probe), std::chrono::milliseconds(1000),
                     [this, add, voter, http_addr, m = std::move(m)](Result<Response> r) mutable {
                       const bool up = r.ok() && r->status == 200;
                       if (up) {
                         json health = json::parse(r->body, nullptr, false);
                         if (health.is_object() && health.contains("gateway"))
                           m["gateway"] = gateway_brief(health["gateway"]);
                       }
                       if (!up || !voter)
                         return add(std::move(m), up);
                       Request view;
                       view.method = "GET";
                       view.target = "/status";
                       if (!options_.own_authorization.empty())
                         view.headers.emplace_back("Authorization", options_.own_authorization);
                       client_->fetch(http_addr, std::move(view), std::chrono::milliseconds(1000),
                                      [add, m = std::move(m)](Result<Response> r) mutable {
                                        if (r.ok() && r->status == 200)
                                          add_peer_view(m, json::parse(r->body, nullptr, false));
                                        add(std::move(m), true);
                                      });
                     });
    }
  }
}

Status Api::serving(const node::NodeStatus& st) const {
  if (!st.failure.ok())
    return Status::unavailable(st.failure.to_string());
  return options_.readiness ? options_.readiness() : Status();
}

Status Api::ready() const {
  const node::NodeStatus st = node_->status();
  if (Status s = serving(st); !s.ok())
    return s;
  if (st.raft.leader == raft::kNoNode)
    return Status::unavailable("no leader is known");
  if (st.applied < st.raft.hard_state.commit)
    return Status::unavailable("applying the log: " + std::to_string(st.applied) + " of " +
                               std::to_string(st.raft.hard_state.commit));
  return Status();
}

void Api::readyz(const CallPtr& call) {
  auto not_ready = [call](const std::string& why) {
    call->answer(Response::json(503, json{{"ready", false}, {"error", why}}));
  };
  if (call->params.count("sync") == 0) {
    if (Status s = ready(); !s.ok())
      return not_ready(s.message());
    return call->answer(Response::json(200, json{{"ready", true}}));
  }
  if (Status s = serving(node_->status()); !s.ok())
    return not_ready(s.message());
  std::chrono::milliseconds timeout{5000};
  if (auto t = call->params.find("timeout"); t != call->params.end()) {
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
