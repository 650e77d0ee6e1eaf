#include "http/api.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "fsm/kv_command.h"
#include "transport/member.h"
#include "util/duration.h"

namespace raftnginx::http {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
// How late past its deadline a waiting call may be answered.
constexpr std::chrono::milliseconds kSweepInterval{100};

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

// Decodes %XX escapes (and '+' in queries); nullopt if an escape is malformed.
std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size())
        return std::nullopt;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0)
        return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (in[i] == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty())
      continue;
    const size_t eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    auto value =
        eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
    if (key && value)
      out[*key] = *value;
  }
  return out;
}

std::string member_name(raft::NodeId id, const std::map<raft::NodeId, std::string>& contexts) {
  auto it = contexts.find(id);
  if (it != contexts.end()) {
    transport::Member m = transport::parse_member(it->second);
    if (!m.name.empty())
      return m.name;
  }
  return std::to_string(id);
}

json member_json(raft::NodeId id, const node::NodeStatus& st) {
  auto it = st.member_contexts.find(id);
  const transport::Member m =
      it == st.member_contexts.end() ? transport::Member{} : transport::parse_member(it->second);
  return json{{"id", m.name.empty() ? std::to_string(id) : m.name},
              {"raft_addr", m.raft_address},
              {"http_addr", m.http_address},
              {"voter", st.raft.conf.voters.count(id) > 0}};
}

// The member named `name` in `st`, or kNoNode.
raft::NodeId find_member(const node::NodeStatus& st, const std::string& name) {
  const raft::NodeId id = transport::node_id_for(name);
  return st.raft.conf.contains(id) ? id : raft::kNoNode;
}

Result<json> parse_object(const std::string& body) {
  json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded())
    return Status::invalid_argument("request body is not valid JSON");
  if (!doc.is_object())
    return Status::invalid_argument("request body must be a JSON object");
  return doc;
}

Result<std::string> string_field(const json& doc, const char* name, bool required) {
  auto it = doc.find(name);
  if (it == doc.end()) {
    if (required)
      return Status::invalid_argument(std::string("missing field \"") + name + "\"");
    return std::string();
  }
  if (!it->is_string())
    return Status::invalid_argument(std::string("field \"") + name + "\" must be a string");
  if (required && it->get_ref<const std::string&>().empty())
    return Status::invalid_argument(std::string("field \"") + name + "\" must not be empty");
  return it->get<std::string>();
}

// The member named by a membership call's body, {"id": ...}; "" if optional and absent.
Result<std::string> member_id_in(const std::string& body, bool required) {
  if (body.empty() && !required)
    return std::string();
  auto doc = parse_object(body);
  if (!doc.ok())
    return doc.status();
  return string_field(*doc, "id", required);
}

}  // namespace

struct Api::Call {
  Request request;
  std::string path;
  std::map<std::string, std::string> query;
  std::string route = "unknown";
  Clock::time_point start = Clock::now();
  Respond respond;
  Api* api;
  std::atomic<bool> answered{false};
  // Where the call sits in api->waiting_, if it waits there (guarded by api->waiting_mu_).
  std::optional<std::list<Waiting>::iterator> waiting;

  bool done() const { return answered.load(); }
  // The first answer wins: a timeout and a late result may race.
  void answer(Response r) {
    if (answered.exchange(true))
      return;
    api->stop_waiting(this);
    api->metrics_.record_request(route, r.status, Clock::now() - start);
    respond(std::move(r));
  }
};

Api::Api(ApiOptions options, node::Node* node, const fsm::KvStore* kv, Server* server,
         Client* client)
    : options_(std::move(options)), node_(node), kv_(kv), server_(server), client_(client) {
  server_->after(kSweepInterval, [this] { sweep_deadlines(); });
}

void Api::handle(Request request, Respond respond) {
  auto call = std::make_shared<Call>();
  call->request = std::move(request);
  call->respond = std::move(respond);
  call->api = this;
  const std::string& target = call->request.target;
  const size_t question = target.find('?');
  auto path = percent_decode(target.substr(0, question), false);
  if (question != std::string::npos)
    call->query = parse_query(std::string_view(target).substr(question + 1));
  if (!path)
    return call->answer(Response::error(400, "malformed percent-encoding in the path"));
  call->path = std::move(*path);
  route(call, call->path);
}

void Api::route(const CallPtr& call, const std::string& path) {
  using Handler = void (Api::*)(const CallPtr&);
  struct Route {
    std::string_view path;
    std::vector<std::string_view> methods;  // the first one runs `handler`
    Handler handler;
  };
  // /key/{key} takes GET, PUT and DELETE; every other route is an exact path.
  static const std::vector<Route> kRoutes = {
      {"/key", {"POST"}, &Api::set_keys},    {"/key/{key}", {"GET", "PUT", "DELETE"}, nullptr},
      {"/join", {"POST"}, &Api::join},       {"/remove", {"POST", "DELETE"}, &Api::remove},
      {"/promote", {"POST"}, &Api::promote}, {"/leader/transfer", {"POST"}, &Api::transfer},
      {"/status", {"GET"}, &Api::status},    {"/nodes", {"GET"}, &Api::nodes},
      {"/metrics", {"GET"}, &Api::metrics},  {"/readyz", {"GET"}, &Api::readyz},
      {"/healthz", {"GET"}, &Api::healthz},
  };
  static constexpr std::string_view kKeyPrefix = "/key/";
  const bool key_path = path.starts_with(kKeyPrefix);
  const Route* found = nullptr;
  for (const Route& r : kRoutes) {
    if (key_path ? r.path == "/key/{key}" : r.path == path)
      found = &r;
  }
  if (found == nullptr)
    return call->answer(Response::error(404, "no such endpoint: " + path));
  call->route = std::string(found->path);
  const std::string& method = call->request.method;
  if (std::find(found->methods.begin(), found->methods.end(), method) == found->methods.end()) {
    std::string allow;
    for (std::string_view m : found->methods)
      allow += (allow.empty() ? "" : ", ") + std::string(m);
    Response r = Response::error(405, "method " + method + " not allowed on " + call->route);
    r.headers.emplace_back("Allow", allow);
    return call->answer(std::move(r));
  }
  if (!key_path)
    return (this->*found->handler)(call);
  const std::string key = path.substr(kKeyPrefix.size());
  if (key.empty())
    return call->answer(Response::error(400, "empty key"));
  if (method == "GET") {
    get_key(call, key);
  } else if (method == "PUT") {
    put_key(call, key);
  } else {
    delete_key(call, key);
  }
}

void Api::metrics(const CallPtr& call) {
  Response r;
  r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
  r.body = metrics_.render(node_->status(), node_->sync_latency());
  call->answer(std::move(r));
}

void Api::healthz(const CallPtr& call) {
  call->answer(Response::json(200, json{{"status", "ok"}}));
}

Response Api::with_raft_headers(Response r, bool stale_read) const {
  r.headers.emplace_back("X-Raft-Index", std::to_string(node_->applied_index()));
  r.headers.emplace_back("X-Raft-Served-By", options_.self_name);
  if (stale_read) {
    const auto since = std::chrono::duration_cast<std::chrono::milliseconds>(
        Clock::now() - node_->leader_contact());
    r.headers.emplace_back("X-Raft-Last-Contact", std::to_string(since.count()));
  }
  return r;
}

void Api::get_key(const CallPtr& call, const std::string& key) {
  auto read = [this, call, key](bool stale) {
    auto value = kv_->get(key);
    if (!value.ok())
      return call->answer(Response::error(500, value.status().to_string()));
    if (!*value) {
      return call->answer(with_raft_headers(Response::error(404, "key not found: " + key), stale));
    }
    call->answer(with_raft_headers(Response::json(200, json{{key, **value}}), stale));
  };
  const auto level_it = call->query.find("level");
  const std::string level = level_it == call->query.end() ? "stale" : level_it->second;
  if (level == "stale") {
    if (auto lag = call->query.find("max_lag"); lag != call->query.end()) {
      auto max_lag = parse_duration(lag->second);
      if (!max_lag.ok())
        return call->answer(Response::error(400, "max_lag: " + max_lag.status().message()));
      const auto since = Clock::now() - node_->leader_contact();
      if (since > *max_lag) {
        Response r = Response::error(
            503, "this node has not heard from a leader within max_lag " + lag->second);
        r.headers.emplace_back("Retry-After", "1");
        return call->answer(with_raft_headers(std::move(r), true));
      }
    }
    return read(true);
  }
  if (level != "linearizable") {
    return call->answer(
        Response::error(400, "level must be stale or linearizable, not '" + level + "'"));
  }
  deadline(call, "the read could not be confirmed with the leader in time");
  node_->read_barrier([this, call, read, thread = Server::current_thread()](Status s) {
    if (!s.ok())
      return fail(call, s);
    // The raft loop only confirms the read index; the read itself runs on the server thread
    // that took the request.
    server_->post(thread, [read] { read(false); });
  });
}

void Api::set_keys(const CallPtr& call) {
  auto doc = parse_object(call->request.body);
  if (!doc.ok())
    return call->answer(Response::error(400, doc.status().message()));
  fsm::KvCommand cmd;
  for (const auto& [key, value] : doc->items()) {
    if (key.empty())
      return call->answer(Response::error(400, "empty key"));
    if (!value.is_string()) {
      return call->answer(Response::error(400, "the value of \"" + key + "\" must be a string"));
    }
    cmd.pairs.emplace_back(key, value.get<std::string>());
  }
  if (cmd.pairs.empty())
    return call->answer(Response::error(400, "no keys to set"));
  propose(call, fsm::encode_kv_command(cmd));
}

void Api::put_key(const CallPtr& call, const std::string& key) {
  fsm::KvCommand cmd;
  cmd.pairs.emplace_back(key, call->request.body);
  propose(call, fsm::encode_kv_command(cmd));
}

void Api::delete_key(const CallPtr& call, const std::string& key) {
  fsm::KvCommand cmd;
  cmd.op = fsm::KvCommand::Op::kDelete;
  cmd.keys.push_back(key);
  propose(call, fsm::encode_kv_command(cmd));
}

void Api::propose(const CallPtr& call, std::string command) {
  deadline(call, "the write did not commit in time; it may still be applied");
  std::string request_id(call->request.header("Idempotency-Key"));
  node_->propose(std::move(command), std::move(request_id),
                 [this, call](Result<fsm::ApplyResult> r) {
                   if (!r.ok())
                     return fail(call, r.status());
                   if (!r->status.ok())
                     return call->answer(Response::error(400, r->status.message()));
                   call->answer(with_raft_headers(Response::json(200, json::object()), false));
                 });
}

void Api::fail(const CallPtr& call, const Status& s) {
  switch (s.code()) {
    case Status::Code::kNotLeader:
      return not_leader(call);
    case Status::Code::kInvalidArgument:
      return call->answer(Response::error(400, s.message()));
    case Status::Code::kNotFound:
      return call->answer(Response::error(404, s.message()));
    case Status::Code::kBusy:
    case Status::Code::kUnavailable: {
      Response r = Response::error(503, s.message());
      r.headers.emplace_back("Retry-After", "1");
      return call->answer(std::move(r));
    }
    default:
      return call->answer(Response::error(500, s.to_string()));
  }
}

void Api::not_leader(const CallPtr& call) {
  const node::NodeStatus st = node_->status();
  const raft::NodeId leader = st.raft.leader;
  auto unavailable = [&](const std::string& why) {
    Response r = Response::error(503, why);
    r.headers.emplace_back("Retry-After", "1");
    call->answer(std::move(r));
  };
  if (leader == raft::kNoNode || leader == st.raft.id)
    return unavailable("no leader is known; retry shortly");
  auto context = st.member_contexts.find(leader);
  const std::string leader_http = context == st.member_contexts.end()
                                      ? std::string()
                                      : transport::parse_member(context->second).http_address;
  if (leader_http.empty())
    return unavailable("the leader's HTTP address is not known");
  switch (options_.write_policy) {
    case WritePolicy::kRedirect: {
      Response r;
      r.status = 307;
      r.headers.emplace_back("Location", "http://" + leader_http + call->request.target);
      r.headers.emplace_back("X-Raft-Leader", leader_http);
      return call->answer(std::move(r));
    }
    case WritePolicy::kReject: {
      Response r = Response::error(
          403, "this node is a follower; send writes to the leader at " + leader_http);
      r.headers.emplace_back("X-Raft-Leader", leader_http);
      return call->answer(std::move(r));
    }
    case WritePolicy::kForward: {
      if (!call->request.header("X-Raft-Forwarded-By").empty())
        return unavailable("leadership is changing; retry shortly");
      Request forwarded;
      forwarded.method = call->request.method;
      forwarded.target = call->request.target;
      forwarded.body = call->request.body;
      for (const char* name : {"Content-Type", "Idempotency-Key"}) {
        if (auto v = call->request.header(name); !v.empty())
          forwarded.headers.emplace_back(name, std::string(v));
      }
      forwarded.headers.emplace_back("X-Raft-Forwarded-By", options_.self_name);
      client_->fetch(
          leader_http, std::move(forwarded), options_.write_timeout,
          [call, leader_http](Result<Response> r) {
            if (!r.ok()) {
              Response e =
                  Response::error(503, "could not forward to the leader: " + r.status().message());
              e.headers.emplace_back("Retry-After", "1");
              return call->answer(std::move(e));
            }
            Response relayed;
            relayed.status = r->status;
            relayed.body = std::move(r->body);
            for (const auto& [name, value] : r->headers) {
              if (name.starts_with("X-Raft-") || name == "Content-Type" || name == "Retry-After")
                relayed.headers.emplace_back(name, value);
            }
            relayed.headers.emplace_back("X-Raft-Leader", leader_http);
            call->answer(std::move(relayed));
          });
      return;
    }
  }
}

void Api::deadline(const CallPtr& call, const char* message) {
  std::lock_guard lock(waiting_mu_);
  if (call->done())
    return;
  call->waiting = waiting_.insert(waiting_.end(),
                                  Waiting{Clock::now() + options_.write_timeout, call, message});
}

void Api::stop_waiting(Call* call) {
  CallPtr keep;  // released after the lock: it may hold the last reference
  std::lock_guard lock(waiting_mu_);
  if (!call->waiting)
    return;
  keep = std::move((*call->waiting)->call);
  waiting_.erase(*call->waiting);
  call->waiting.reset();
}

void Api::sweep_deadlines() {
  std::vector<Waiting> overdue;
  {
    const auto now = Clock::now();
    std::lock_guard lock(waiting_mu_);
    while (!waiting_.empty() && waiting_.front().due <= now) {
      waiting_.front().call->waiting.reset();
      overdue.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
  }
  for (Waiting& w : overdue) {
    Response r = Response::error(503, w.message);
    r.headers.emplace_back("Retry-After", "1");
    w.call->answer(std::move(r));
  }
  server_->after(kSweepInterval, [this] { sweep_deadlines(); });
}

void Api::join(const CallPtr& call) {
  auto doc = parse_object(call->request.body);
  if (!doc.ok())
    return call->answer(Response::error(400, doc.status().message()));
  auto name = string_field(*doc, "id", true);
  auto raft_addr = string_field(*doc, "addr", true);
  auto http_addr = string_field(*doc, "http_addr", false);
  for (const auto* field : {&name, &raft_addr, &http_addr}) {
    if (!field->ok())
      return call->answer(Response::error(400, field->status().message()));
  }
  std::string host, port;
  if (!transport::split_host_port(*raft_addr, &host, &port))
    return call->answer(Response::error(400, "addr must be host:port"));
  if (!http_addr->empty() && !transport::split_host_port(*http_addr, &host, &port))
    return call->answer(Response::error(400, "http_addr must be host:port"));
  bool voter = true;
  if (auto v = doc->find("voter"); v != doc->end()) {
    if (!v->is_boolean())
      return call->answer(Response::error(400, "field \"voter\" must be true or false"));
    voter = v->get<bool>();
  }
  const transport::Member member{*name, *raft_addr, *http_addr};
  const raft::NodeId id = transport::node_id_for(*name);
  const node::NodeStatus st = node_->status();
  if (st.raft.role != raft::Role::kLeader)
    return not_leader(call);
  raft::ConfChange cc{voter ? raft::ConfChangeType::kAddVoter : raft::ConfChangeType::kAddLearner,
                      id, transport::encode_member(member)};
  if (st.raft.conf.contains(id)) {
    auto context = st.member_contexts.find(id);
    const transport::Member known = context == st.member_contexts.end()
                                        ? transport::Member{}
                                        : transport::parse_member(context->second);
    if (!known.name.empty() && known.name != *name) {
      return call->answer(
          Response::error(409, "id \"" + *name + "\" collides with member " + known.name));
    }
    if (known == member) {
      return call->answer(Response::json(200, json{{"id", *name}, {"result", "already a member"}}));
    }
    cc.type = raft::ConfChangeType::kUpdateNode;
  }
  change_membership(call, std::move(cc));
}

void Api::remove(const CallPtr& call) {
  auto name = member_id_in(call->request.body, true);
  if (!name.ok())
    return call->answer(Response::error(400, name.status().message()));
  const raft::NodeId id = find_member(node_->status(), *name);
  if (id == raft::kNoNode)
    return call->answer(Response::error(404, "no member named " + *name));
  change_membership(call, raft::ConfChange{raft::ConfChangeType::kRemoveNode, id, {}});
}

void Api::promote(const CallPtr& call) {
  auto name = member_id_in(call->request.body, true);
  if (!name.ok())
    return call->answer(Response::error(400, name.status().message()));
  const node::NodeStatus st = node_->status();
  const raft::NodeId id = find_member(st, *name);
  if (id == raft::kNoNode)
    return call->answer(Response::error(404, "no member named " + *name));
  if (st.raft.conf.voters.count(id))
    return call->answer(Response::error(409, *name + " is already a voter"));
  auto context = st.member_contexts.find(id);
  change_membership(call, raft::ConfChange{raft::ConfChangeType::kAddVoter, id,
                                           context == st.member_contexts.end() ? std::string()
                                                                               : context->second});
}

void Api::change_membership(const CallPtr& call, raft::ConfChange cc) {
  deadline(call, "the membership change did not commit in time; it may still be applied");
  const raft::NodeId id = cc.node;
  node_->change_membership(std::move(cc), [this, call, id](Result<fsm::ApplyResult> r) {
    if (!r.ok())
      return fail(call, r.status());
    const node::NodeStatus st = node_->status();
    spdlog::info("membership changed: {} (term {})", call->request.body, st.raft.hard_state.term);
    json members = json::array();
    for (raft::NodeId m : st.raft.conf.voters)
      members.push_back(member_json(m, st));
    for (raft::NodeId m : st.raft.conf.learners)
      members.push_back(member_json(m, st));
    call->answer(Response::json(
        200, json{{"id", member_name(id, st.member_contexts)}, {"members", members}}));
  });
}

void Api::transfer(const CallPtr& call) {
  const node::NodeStatus st = node_->status();
  if (st.raft.role != raft::Role::kLeader)
    return not_leader(call);
  raft::NodeId target = raft::kNoNode;
  auto name = member_id_in(call->request.body, false);
  if (!name.ok())
    return call->answer(Response::error(400, name.status().message()));
  if (!name->empty()) {
    target = find_member(st, *name);
    if (target == raft::kNoNode || !st.raft.conf.voters.count(target))
      return call->answer(Response::error(404, "no voter named " + *name));
  }
  if (target == raft::kNoNode) {
    raft::Index best_match = 0;
    for (const raft::PeerStatus& p : st.raft.peers) {
      if (p.id != st.raft.id && p.voter &&
          (target == raft::kNoNode || p.match_index > best_match)) {
        target = p.id;
        best_match = p.match_index;
      }
    }
  }
  if (target == raft::kNoNode)
    return call->answer(Response::error(409, "no other voter to hand leadership to"));
  if (target == st.raft.id) {
    return call->answer(
        Response::json(200, json{{"leader", member_name(target, st.member_contexts)}}));
  }
  node_->transfer_leadership(target, [this, call, target](Status s) {
    if (!s.ok())
      return fail(call, s);
    wait_for_leader(call, target, Clock::now() + options_.write_timeout);
  });
}

void Api::wait_for_leader(const CallPtr& call, raft::NodeId target, Clock::time_point until) {
  const node::NodeStatus st = node_->status();
  if (st.raft.leader == target) {
    return call->answer(
        Response::json(200, json{{"leader", member_name(target, st.member_contexts)}}));
  }
  if (Clock::now() >= until) {
    Response r = Response::error(503, "leadership did not move in time");
    r.headers.emplace_back("Retry-After", "1");
    return call->answer(std::move(r));
  }
  server_->after(std::chrono::milliseconds(20),
                 [this, call, target, until] { wait_for_leader(call, target, until); });
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
  for (raft::NodeId id : st.raft.conf.voters)
    add(id);
  for (raft::NodeId id : st.raft.conf.learners)
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
            {"snapshots_taken", st.snapshots_taken},
            {"snapshots_installed", st.snapshots_installed}};
  if (!st.failure.ok())
    body["failure"] = st.failure.to_string();
  call->answer(Response::json(200, body));
}

void Api::nodes(const CallPtr& call) {
  const node::NodeStatus st = node_->status();
  std::vector<raft::NodeId> ids(st.raft.conf.voters.begin(), st.raft.conf.voters.end());
  ids.insert(ids.end(), st.raft.conf.learners.begin(), st.raft.conf.learners.end());
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
    auto parsed = parse_duration(t->second);
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
