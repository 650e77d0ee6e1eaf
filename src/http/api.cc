// Routing, deadlines, and the answers every route shares (errors, a write on a follower).
#include "http/api.h"

#include <algorithm>

#include "http/api_json.h"

namespace raftnginx::http {

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

}  // namespace

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

void Api::Call::answer(Response r) {
  if (answered.exchange(true))
    return;
  api->stop_waiting(this);
  api->metrics_.record_request(route, r.status, Clock::now() - start);
  respond(std::move(r));
}

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
  if (options_.auth)
    call->principal = principal_of(call->request);
  route(call, call->path);
}

std::optional<std::string> Api::integrity_problem() const {
  if (node_->damaged()) {
    return "this node's storage is damaged (" + node_->status().damage.message() +
           "): it serves no reads until repaired";
  }
  return options_.replica_check ? options_.replica_check->diverged() : std::nullopt;
}

std::optional<Response> Api::screen(const Request& head) const {
  if (!options_.auth || principal_of(head))
    return std::nullopt;
  // Every route that takes a body needs a principal: a stranger's body is not even read.
  return Response::unauthenticated("this cluster needs credentials: Authorization: Bearer <token>");
}

std::shared_ptr<const Principal> Api::principal_of(const Request& request) const {
  // Through a gateway, the certificate on the connection is the gateway's own (nginx/conf.cc):
  // it lends its identity to no client.
  const bool via_gateway = !request.header("X-Raft-Gateway").empty();
  return options_.auth->authenticate(request.header("Authorization"),
                                     via_gateway ? std::string_view() : request.certificate_name);
}

bool Api::permitted(const CallPtr& call, Need need) {
  if (!options_.auth || need == Need::kNothing || (need == Need::kStatus && options_.public_status))
    return true;
  if (!call->principal) {
    call->answer(
        Response::unauthenticated("this cluster needs credentials: Authorization: Bearer <token>"));
    return false;
  }
  const Principal& p = *call->principal;
  const bool ok =
      need == Need::kStatus || need == Need::kKeys || p.admin || (need == Need::kJoin && p.join);
  if (!ok)
    call->answer(Response::error(403, p.name + " may not do this (" + call->route + ")"));
  return ok;
}

bool Api::may_read(const CallPtr& call, std::string_view key) {
  if (!options_.auth || call->principal->may_read(key))
    return true;
  call->answer(Response::error(403, call->principal->name + " may not read this key"));
  return false;
}

bool Api::may_write(const CallPtr& call, std::string_view key) {
  if (!options_.auth || call->principal->may_write(key))
    return true;
  call->answer(Response::error(403, call->principal->name + " may not write this key"));
  return false;
}

void Api::route(const CallPtr& call, const std::string& path) {
  using Handler = void (Api::*)(const CallPtr&);
  struct Route {
    std::string_view path;
    std::vector<std::string_view> methods;  // the first one runs `handler`
    Handler handler;
    Need need;
  };
  // /key/{key} takes GET, PUT and DELETE; every other route is an exact path.
  static const std::vector<Route> kRoutes = {
      {"/key", {"POST"}, &Api::set_keys, Need::kKeys},
      {"/key/{key}", {"GET", "PUT", "DELETE"}, nullptr, Need::kKeys},
      {"/join", {"POST"}, &Api::join, Need::kJoin},
      {"/remove", {"POST", "DELETE"}, &Api::remove, Need::kAdmin},
      {"/promote", {"POST"}, &Api::promote, Need::kAdmin},
      {"/leader/transfer", {"POST"}, &Api::transfer, Need::kAdmin},
      {"/status", {"GET"}, &Api::status, Need::kStatus},
      {"/hash", {"GET"}, &Api::hash, Need::kStatus},
      {"/nodes", {"GET"}, &Api::nodes, Need::kStatus},
      {"/metrics", {"GET"}, &Api::metrics, Need::kStatus},
      {"/readyz", {"GET"}, &Api::readyz, Need::kNothing},
      {"/healthz", {"GET"}, &Api::healthz, Need::kNothing},
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
  if (!permitted(call, found->need))
    return;
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

void Api::fail(const CallPtr& call, const Status& s) {
  switch (s.code()) {
    case Status::Code::kNotLeader:
      return not_leader(call);
    case Status::Code::kInvalidArgument:
      return call->answer(Response::error(400, s.message()));
    case Status::Code::kNotFound:
      return call->answer(Response::error(404, s.message()));
    case Status::Code::kConflict:
      return call->answer(Response::error(422, s.message()));
    case Status::Code::kBusy:
    case Status::Code::kUnavailable:
      return call->answer(Response::unavailable(s.message()));
    case Status::Code::kOutcomeUnknown:
      return call->answer(Response::outcome_unknown(s.message()));
    default:
      return call->answer(Response::error(500, s.to_string()));
  }
}

void Api::not_leader(const CallPtr& call) {
  const node::NodeStatus st = node_->status();
  const raft::NodeId leader = st.raft.leader;
  if (leader == raft::kNoNode || leader == st.raft.id)
    return call->answer(Response::unavailable("no leader is known; retry shortly"));
  const cluster::Member* record = st.membership.find(leader);
  if (record == nullptr || record->http_address.empty())
    return call->answer(Response::unavailable("the leader's HTTP address is not known"));
  // Validated when it was stored (cluster/member.h), so it is safe in a header as it is.
  const std::string& leader_http = record->http_address;
  switch (options_.write_policy) {
    case WritePolicy::kRedirect: {
      Response r;
      r.status = 307;
      r.headers.emplace_back("Location", (options_.https ? "https://" : "http://") + leader_http +
                                             call->request.target);
      r.headers.emplace_back("X-Raft-Leader", leader_http);
      return call->answer(std::move(r));
    }
    case WritePolicy::kReject: {
      Response r = Response::error(
          403, "this node is a follower; send writes to the leader at " + leader_http);
      r.headers.emplace_back("X-Raft-Leader", leader_http);
      return call->answer(std::move(r));
    }
    case WritePolicy::kForward:
      return forward_to_leader(call, leader_http);
  }
}

void Api::forward_to_leader(const CallPtr& call, const std::string& leader_http) {
  if (!call->request.header("X-Raft-Forwarded-By").empty())
    return call->answer(Response::unavailable("leadership is changing; retry shortly"));
  Request forwarded;
  forwarded.method = call->request.method;
  forwarded.target = call->request.target;
  forwarded.body = call->request.body;
  for (const char* name : {"Content-Type", "Idempotency-Key", "Authorization"}) {
    if (auto v = call->request.header(name); !v.empty())
      forwarded.headers.emplace_back(name, std::string(v));
  }
  forwarded.headers.emplace_back("X-Raft-Forwarded-By", options_.self_name);
  client_->fetch(
      leader_http, std::move(forwarded), options_.write_timeout,
      [call, leader_http](Result<Response> r) {
        if (!r.ok()) {
          return call->answer(Response::outcome_unknown("could not forward to the leader: " +
                                                        r.status().message()));
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
}

void Api::deadline(const CallPtr& call, Expiry expiry, const char* message) {
  std::lock_guard lock(waiting_mu_);
  if (call->done())
    return;
  call->waiting = waiting_.insert(
      waiting_.end(), Waiting{Clock::now() + options_.write_timeout, call, expiry, message});
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
    w.call->answer(w.expiry == Expiry::kOutcomeUnknown ? Response::outcome_unknown(w.message)
                                                       : Response::unavailable(w.message));
  }
  server_->after(kSweepInterval, [this] { sweep_deadlines(); });
}

}  // namespace raftnginx::http
