// Routing, deadlines, and the answers every route shares (errors, a write on a follower).
#include "http/api.h"

#include <algorithm>
#include <set>

#include "http/api_json.h"

namespace raftnginx::http {

using Clock = std::chrono::steady_clock;
// How late past its deadline a waiting call may be answered.
constexpr std::chrono::milliseconds kSweepInterval{100};
constexpr std::chrono::milliseconds kHistoryInterval{250};

namespace {

// A header of one connection, not of the message it carries (RFC 9110, 7.6.1), or one this
// server sets itself. Kept as Headers so that find_header's case-insensitive match is the one.
bool hop_by_hop(std::string_view name) {
  static const Headers kHeaders = {
      {"Connection", "-"},          {"Keep-Alive", "-"}, {"Proxy-Authenticate", "-"},
      {"Proxy-Authorization", "-"}, {"TE", "-"},         {"Trailer", "-"},
      {"Transfer-Encoding", "-"},   {"Upgrade", "-"},    {"Date", "-"},
      {"Content-Length", "-"},      {"Server", "-"}};
  return !find_header(kHeaders, name).empty();
}

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
  const auto took = Clock::now() - start;
  api->metrics_.record_request(route, r.status, took);
  if (traffic)
    api->history_->record(http_request.method != "GET" && http_request.method != "HEAD", r.status,
                          took);
  reply(std::move(r));
}

Api::Call::~Call() {
  // Not while it waits in api->waiting_: only the Api's own end destroys a call there.
  if (!answered.load() && !waiting)
    answer(Response::error(500, "the backend's route did not answer"));
}

Api::Api(ApiOptions options, node::Node* node, std::vector<Route> routes, Server* server,
         Client* client)
    : options_(std::move(options)), node_(node), server_(server), client_(client) {
  RAFTNGINX_CHECK(check_routes(routes).ok(), "the backend's routes were not checked");
  for (const OwnRoute& r : own_routes()) {
    routes_.push_back(
        mount(r.method, r.path, r.need,
              [this, handler = r.handler](const CallPtr& call) { (this->*handler)(call); }));
  }
  for (Route& r : routes) {
    const Need need = r.access == Access::kAnyone  ? Need::kNothing
                      : r.access == Access::kAdmin ? Need::kAdmin
                                                   : Need::kPrincipal;
    routes_.push_back(
        mount(r.method, r.path, need, [handle = std::move(r.handle)](const CallPtr& call) {
          call->traffic = true;  // what the status page charts
          call->guarded([&] { handle(call); });
        }));
  }
  server_->after(kSweepInterval, [this] { sweep_deadlines(); });
  server_->after(kHistoryInterval, [this] { sample_history(); });
  node_->observe([history = std::weak_ptr<History>(history_)](const node::NodeStatus& st) {
    if (auto h = history.lock())
      h->on_status(st);
  });
}

void Api::handle(Request request, Respond respond) {
  auto call = std::make_shared<Call>();
  call->http_request = std::move(request);
  call->reply = std::move(respond);
  call->api = this;
  const std::string& target = call->http_request.target;
  const size_t question = target.find('?');
  auto path = percent_decode(target.substr(0, question), false);
  if (question != std::string::npos)
    call->params = parse_query(std::string_view(target).substr(question + 1));
  if (!path)
    return call->answer(Response::error(400, "malformed percent-encoding in the path"));
  call->decoded_path = std::move(*path);
  if (options_.auth)
    call->principal = principal_of(call->http_request);
  route(call);
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
  // A route open to anyone takes a stranger's body too.
  if (auto path = percent_decode(head.target.substr(0, head.target.find('?')), false)) {
    const Match m = match(*path, head.method);
    if (m.route != nullptr && m.route->need == Need::kNothing)
      return std::nullopt;
  }
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
  const bool ok = need == Need::kStatus || need == Need::kPrincipal || p.admin ||
                  (need == Need::kJoin && p.join);
  if (!ok)
    call->answer(Response::error(403, p.name + " may not do this (" + call->route + ")"));
  return ok;
}

namespace {

// A route's path: "/", then printable ASCII without spaces, '?', '#' or '%', and at most one
// {name}, at the end.
Status check_route_path(const std::string& path) {
  if (!path.starts_with('/'))
    return Status::invalid_argument("route " + path + " must begin with '/'");
  for (const char c : path) {
    if (c <= ' ' || c > '~' || c == '?' || c == '#' || c == '%')
      return Status::invalid_argument("route " + path + " has a character a path cannot hold");
  }
  const size_t open = path.find('{');
  const size_t close = path.find('}');
  if (open == std::string::npos && close == std::string::npos)
    return Status();
  if (open == std::string::npos || close != path.size() - 1 || open + 2 >= path.size() ||
      path.find_first_of("{}/", open + 1) != close)
    return Status::invalid_argument("route " + path + ": only its end may be a {name}");
  return Status();
}

// The part of `pattern` before its trailing {name}, or all of it.
std::string_view fixed_part(std::string_view pattern) {
  return pattern.substr(0, pattern.find('{'));
}

}  // namespace

// The daemon's own routes; a backend may take none of their paths.
std::span<const Api::OwnRoute> Api::own_routes() {
  static const OwnRoute kRoutes[] = {
      {"POST", "/join", Need::kJoin, &Api::join},
      {"POST", "/remove", Need::kAdmin, &Api::remove},
      {"DELETE", "/remove", Need::kAdmin, &Api::remove},
      {"POST", "/promote", Need::kAdmin, &Api::promote},
      {"POST", "/leader/transfer", Need::kAdmin, &Api::transfer},
      {"GET", "/backup", Need::kAdmin, &Api::backup},
      {"GET", "/ui", Need::kNothing, &Api::ui_redirect},
      {"GET", "/ui/", Need::kNothing, &Api::ui_page},
      {"GET", "/ui/chart.js", Need::kNothing, &Api::ui_chart},
      {"GET", "/ui/history", Need::kStatus, &Api::ui_history},
      {"POST", "/restore", Need::kAdmin, &Api::restore},
      {"GET", "/status", Need::kStatus, &Api::status},
      {"GET", "/hash", Need::kStatus, &Api::hash},
      {"GET", "/nodes", Need::kStatus, &Api::nodes},
      {"GET", "/metrics", Need::kStatus, &Api::metrics},
      {"GET", "/readyz", Need::kNothing, &Api::readyz},
      {"GET", "/healthz", Need::kNothing, &Api::healthz},
  };
  return kRoutes;
}

Status Api::check_routes(const std::vector<Route>& routes) {
  std::set<std::pair<std::string, std::string>> seen;
  for (const Route& r : routes) {
    if (r.method.empty() ||
        !std::all_of(r.method.begin(), r.method.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
      return Status::invalid_argument("route " + r.path + ": method '" + r.method +
                                      "' is not an upper-case HTTP method");
    if (Status s = check_route_path(r.path); !s.ok())
      return s;
    if (!r.handle)
      return Status::invalid_argument("route " + r.method + " " + r.path + " has no handler");
    const std::string_view fixed = fixed_part(r.path);
    const bool tail = fixed.size() != r.path.size();
    std::vector<std::string_view> taken = {defaults::kGatewayPaths};
    for (const OwnRoute& own : own_routes())
      taken.push_back(own.path);
    for (std::string_view t : taken) {
      // A path the daemon's (or a gateway path) begins with, or one a {name} could match.
      const bool gateway = t == defaults::kGatewayPaths && fixed.starts_with(t);
      if (gateway || (tail ? t.starts_with(fixed) : t == fixed))
        return Status::invalid_argument("route " + r.path + " would take the daemon's " +
                                        std::string(t));
    }
    if (!seen.emplace(r.method, r.path.substr(0, fixed.size() + (tail ? 1 : 0))).second)
      return Status::invalid_argument("route " + r.method + " " + r.path + " is mounted twice");
  }
  return Status();
}

Api::Mounted Api::mount(std::string method, const std::string& path, Need need,
                        std::function<void(const CallPtr&)> handle) {
  const std::string_view fixed = fixed_part(path);
  return Mounted{std::move(method), std::string(fixed), path, fixed.size() != path.size(), need,
                 std::move(handle)};
}

Api::Match Api::match(const std::string& path, const std::string& method) const {
  // An exact path is more specific than a {name}; of two {name}s, the longer fixed part is.
  auto more_specific = [](const Mounted& a, const Mounted* b) {
    return b == nullptr || (b->tail && (!a.tail || a.path.size() > b->path.size()));
  };
  Match m;
  for (const Mounted& r : routes_) {
    if (r.tail ? !path.starts_with(r.path) : path != r.path)
      continue;
    if (more_specific(r, m.any))
      m.any = &r;
    if (r.method == method && more_specific(r, m.route))
      m.route = &r;
    if ((", " + m.allow + ", ").find(", " + r.method + ", ") == std::string::npos)
      m.allow += (m.allow.empty() ? "" : ", ") + r.method;
  }
  return m;
}

void Api::route(const CallPtr& call) {
  const std::string& path = call->decoded_path;
  const Match m = match(path, call->http_request.method);
  if (m.any == nullptr)
    return call->answer(Response::error(404, "no such endpoint: " + path));
  call->route = m.any->label;
  if (m.route == nullptr) {
    Response r = Response::error(
        405, "method " + call->http_request.method + " not allowed on " + call->route);
    r.headers.emplace_back("Allow", m.allow);
    return call->answer(std::move(r));
  }
  call->route = m.route->label;
  if (m.route->tail)
    call->tail = path.substr(m.route->path.size());
  if (!permitted(call, m.route->need))
    return;
  m.route->handle(call);
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
                                             call->http_request.target);
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
  if (!call->http_request.header("X-Raft-Forwarded-By").empty())
    return call->answer(Response::unavailable("leadership is changing; retry shortly"));
  Request forwarded;
  forwarded.method = call->http_request.method;
  forwarded.target = call->http_request.target;
  forwarded.body = call->http_request.body;
  for (const char* name : {"Content-Type", "Idempotency-Key", "Authorization"}) {
    if (auto v = call->http_request.header(name); !v.empty())
      forwarded.headers.emplace_back(name, std::string(v));
  }
  forwarded.headers.emplace_back("X-Raft-Forwarded-By", options_.self_name);
  client_->fetch(leader_http, std::move(forwarded), options_.write_timeout,
                 [call, leader_http](Result<Response> r) {
                   if (!r.ok()) {
                     return call->answer(Response::outcome_unknown(
                         "could not forward to the leader: " + r.status().message()));
                   }
                   Response relayed;
                   relayed.status = r->status;
                   relayed.body = std::move(r->body);
                   // Every header the leader's route set (a backend's Location or ETag too),
                   // but those of the leader's own connection, which this server sets anew.
                   for (const auto& header : r->headers) {
                     if (!hop_by_hop(header.first))
                       relayed.headers.push_back(header);
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

void Api::sample_history() {
  history_->note_applied(node_->applied_index());
  server_->after(kHistoryInterval, [this] { sample_history(); });
}

}  // namespace raftnginx::http
