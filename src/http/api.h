// Api: the daemon's HTTP endpoints over one node: membership (hraftd's /join, /remove, ...), the
// operational endpoints (/status, /nodes, /metrics, /readyz, /healthz), and the routes of the
// backend (include/raftnginx/routes.h: the built-in key-value store's are /key and /key/{key}).
// README.md lists every route with its status codes.
//
// Writes are proposed to the local node; on a follower they follow the write policy (redirect
// to the leader, forward to it, or reject). Each request is answered exactly once: with the
// result, 503 when it was not done (safe to retry), or 504 when it may have been done (the write
// did not commit within write_timeout, or its node stopped: retry with the same Idempotency-Key).
//
// The code is split by kind of route: api.cc (routing, deadlines, error answers),
// api_exchange.cc (what a backend's route may do: read levels and writes), api_members.cc,
// api_backup.cc and api_ops.cc. Handlers run on the server's threads or, for answers that wait on
// the node, on its raft loop: they never block.
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "http/auth.h"
#include "http/client.h"
#include "http/history.h"
#include "http/metrics.h"
#include "http/replica_check.h"
#include "http/server.h"
#include "http/write_policy.h"
#include "node/node.h"
#include "raftnginx/routes.h"
#include "util/defaults.h"

namespace raftnginx::http {

struct ApiOptions {
  std::string self_name;
  // What the cluster's members say to each other to tell it from another (transport/frame.h's
  // hello): backups carry it, /join tells it to a new member, /status shows it.
  // Null: the cluster goes by defaults::kClusterName.
  std::function<std::string()> cluster_id;
  WritePolicy write_policy = WritePolicy::kRedirect;
  std::chrono::milliseconds write_timeout = defaults::kWriteTimeout;
  // ?level=auto reads a follower's own copy if it heard from its leader within this (the
  // election timeout: any longer, and another leader may have been elected meanwhile).
  std::chrono::milliseconds recent_contact = defaults::kElectionTimeout;
  // What else /readyz waits for (the node's nginx), if anything.
  std::function<Status()> readiness;
  // This node's nginx and the gateways' files it serves (null: no nginx): /status shows it all,
  // /healthz (and so /nodes) its "files_index" and "refused" without nginx's message.
  std::function<nlohmann::json()> gateway_status;
  // Who may do what (auth.h); null: anyone may do anything (loopback or --insecure only).
  std::shared_ptr<AuthTable> auth;
  // /status, /nodes and /metrics answer anyone, even with auth.
  bool public_status = false;
  // Started with --insecure on a non-loopback address: /status and /metrics say so.
  bool insecure = false;
  // The members' HTTP ports speak TLS: redirects name https.
  bool https = false;
  // Compares this node's state with its peers' (null: no checks).
  ReplicaCheck* replica_check = nullptr;
  // The Authorization this node presents to its peers (/nodes asks each for its /status).
  std::string own_authorization;
  // Checks, before /join adds a member or moves one, that the node answering at its raft address
  // is that member (TcpTransport::verify_member); `done` may run on any thread. Null: no check.
  std::function<void(const cluster::Member&, std::function<void(Status)> done)> verify_joining;
};

class Api {
 public:
  // `routes` are the backend's (REQUIRES: check_routes() passed them). `server` provides the
  // timers; `client` carries forwarded writes and /nodes probes.
  Api(ApiOptions options, node::Node* node, std::vector<Route> routes, Server* server,
      Client* client);

  // Whether a backend's routes may be mounted beside the daemon's own: InvalidArgument names a
  // route that is malformed, or taken (by the daemon, or twice by the backend).
  static Status check_routes(const std::vector<Route>& routes);

  void handle(Request request, Respond respond);
  // Server::Screen: with auth, a request without credentials gets its 401 before its body is
  // read.
  std::optional<Response> screen(const Request& head) const;
  // Where the daemon adds gauges of its own (TLS certificate expiry, --insecure).
  Metrics& metrics() { return metrics_; }
  // What /readyz answers: OK once the node is healthy, knows a leader and applied what it knows
  // committed, and what else the daemon waits for (its nginx) is up; otherwise why not.
  Status ready() const;

 private:
  struct Call;
  using CallPtr = std::shared_ptr<Call>;
  // A call waiting on the node, and when it times out.
  enum class Expiry { kNotDone, kOutcomeUnknown };  // 503 or 504
  struct Waiting {
    std::chrono::steady_clock::time_point due;
    CallPtr call;
    Expiry expiry;
    const char* message;
  };
  // One request in flight: its route, start time, and the once-only answer. What a backend's
  // route may do with it is the Exchange (api_exchange.cc).
  struct Call final : Exchange, std::enable_shared_from_this<Call> {
    Request http_request;
    std::string decoded_path;
    std::string tail;                           // what the route's trailing {name} matched
    std::map<std::string, std::string> params;  // the query, decoded
    std::string route = "unknown";
    bool traffic = false;  // a backend's route: counted in the status page's history
    std::shared_ptr<const Principal> principal;  // who the credentials name, if anyone
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    // The server thread that took the request: where its reads run, whoever starts them.
    size_t thread = Server::current_thread();
    Respond reply;  // the server's, called once
    Api* api = nullptr;
    std::atomic<bool> answered{false};
    // Where the call sits in api->waiting_, if it waits there (guarded by api->waiting_mu_).
    std::optional<std::list<Waiting>::iterator> waiting;

    // A request its route dropped without an answer still gets one.
    ~Call() override;
    bool done() const { return answered.load(); }
    // The first answer wins: a timeout and a late result may race.
    void answer(Response r);

    // Exchange
    const Request& request() const override { return http_request; }
    const std::string& path() const override { return decoded_path; }
    const std::string& path_tail() const override { return tail; }
    std::optional<std::string> query(std::string_view name) const override;
    bool may_read(std::string_view resource) override { return may(resource, false); }
    bool may_write(std::string_view resource) override { return may(resource, true); }
    bool may(std::string_view resource, bool write);
    // Runs the backend's code: an exception it throws is answered 500, and the daemon goes on.
    template <typename F>
    void guarded(F&& f) {
      try {
        f();
      } catch (const std::exception& e) {
        answer(Response::error(500, std::string("the backend failed: ") + e.what()));
      } catch (...) {
        answer(Response::error(500, "the backend failed"));
      }
    }
    void respond(Response response) override { answer(std::move(response)); }
    void read(std::function<Response()> read) override;
    void write(std::string command, std::function<Response(const Outcome&)> answer) override;
    Replica& replica() override { return *api->node_; }
  };
  // What a route needs from the caller.
  enum class Need { kNothing, kStatus, kPrincipal, kJoin, kAdmin };
  // A route as the router holds it: the daemon's own and the backend's alike.
  struct Mounted {
    std::string method;
    std::string path;   // without its trailing {name}, if `tail`
    std::string label;  // as written, for metrics and errors ("/key/{key}")
    bool tail = false;
    Need need = Need::kPrincipal;
    std::function<void(const CallPtr&)> handle;
  };

  struct OwnRoute {
    const char* method;
    const char* path;
    Need need;
    void (Api::*handler)(const CallPtr&);
  };
  static std::span<const OwnRoute> own_routes();
  static Mounted mount(std::string method, const std::string& path, Need need,
                       std::function<void(const CallPtr&)> handle);
  // The routes whose path matches: the most specific of them (`any`), the most specific that
  // takes the method (`route`; null: 405), and every method they take (Allow).
  struct Match {
    const Mounted* any = nullptr;
    const Mounted* route = nullptr;
    std::string allow;
  };
  Match match(const std::string& path, const std::string& method) const;
  void route(const CallPtr& call);
  // Why this node must not serve reads (damage a scrub found, or a replica check it failed).
  std::optional<std::string> integrity_problem() const;
  // Who the request's credentials name (auth.h); REQUIRES: options_.auth.
  std::shared_ptr<const Principal> principal_of(const Request& request) const;
  // Answers 401 or 403 and returns false unless the caller may.
  bool permitted(const CallPtr& call, Need need);

  // api_exchange.cc
  Response with_raft_headers(Response r, bool stale_read) const;

  // api_members.cc
  void join(const CallPtr& call);
  void remove(const CallPtr& call);
  void promote(const CallPtr& call);
  void transfer(const CallPtr& call);
  void change_membership(const CallPtr& call, raft::ConfChange cc);
  void rejoin_as_learner(const CallPtr& call, const cluster::Member& member, bool was_voter);
  void wait_for_leader(const CallPtr& call, raft::NodeId target,
                       std::chrono::steady_clock::time_point until);

  std::string cluster_id() const {
    return options_.cluster_id ? options_.cluster_id() : std::string(defaults::kClusterName);
  }

  // api_ui.cc: the status page and the history it charts.
  void ui_redirect(const CallPtr& call);
  void ui_page(const CallPtr& call);
  void ui_chart(const CallPtr& call);
  void ui_history(const CallPtr& call);

  // api_backup.cc
  void backup(const CallPtr& call);
  void restore(const CallPtr& call);

  // api_ops.cc
  void status(const CallPtr& call);
  nlohmann::json status_json() const;
  void hash(const CallPtr& call);
  void nodes(const CallPtr& call);
  void readyz(const CallPtr& call);
  // Whether the node has not failed and what the daemon waits for is up (/readyz's first half).
  Status serving(const node::NodeStatus& st) const;
  void metrics(const CallPtr& call);
  void healthz(const CallPtr& call);

  // api.cc: the answers every route shares.
  // A write that reached a follower (or a node that is no longer leader).
  void not_leader(const CallPtr& call);
  void forward_to_leader(const CallPtr& call, const std::string& leader_http);
  // The answer to a failed call, by the kind of failure (the one place that maps a Status).
  void fail(const CallPtr& call, const Status& s);
  // Answers with `message` (503 or 504, by `expiry`) unless the call was answered within the
  // write timeout.
  void deadline(const CallPtr& call, Expiry expiry, const char* message);
  void stop_waiting(Call* call);
  // Answers the calls whose deadline passed; runs every kSweepInterval.
  void sweep_deadlines();
  // Notes the applied index in the history (the cluster's write rate); every kHistoryInterval.
  void sample_history();

  const ApiOptions options_;
  node::Node* node_;
  std::vector<Mounted> routes_;
  Server* server_;
  Client* client_;
  Metrics metrics_;
  // Calls waiting on the node, oldest first (all wait the same write timeout). One sweep
  // serves them all: a timer per call cost more than the write under load, and held every
  // call, body and all, until its timer fired. A call leaves the list when it is answered.
  std::mutex waiting_mu_;
  std::list<Waiting> waiting_;
  // Shared with the node's status observer, which may be called until the node stops.
  std::shared_ptr<History> history_ = std::make_shared<History>();
  // Backups streaming now (api_backup.cc), shared with their streams, which may outlive the Api.
  std::shared_ptr<std::atomic<int>> backups_streaming_ = std::make_shared<std::atomic<int>>(0);
};

// Decodes %XX escapes (and '+' when `plus_is_space`); nullopt if an escape is malformed.
std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space);

}  // namespace raftnginx::http
