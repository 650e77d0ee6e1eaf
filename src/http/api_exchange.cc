// What a backend's route may do with its request (include/raftnginx/routes.h): read at a level,
// write through the log, check the caller's permissions.
#include "http/api.h"
#include "util/duration.h"

namespace raftnginx::http {

using Clock = std::chrono::steady_clock;

Response Api::with_raft_headers(Response r, bool stale_read) const {
  if (r.header("X-Raft-Index").empty())
    r.headers.emplace_back("X-Raft-Index", std::to_string(node_->applied_index()));
  r.headers.emplace_back("X-Raft-Served-By", options_.self_name);
  if (stale_read) {
    const auto since = std::chrono::duration_cast<std::chrono::milliseconds>(
        Clock::now() - node_->leader_contact());
    r.headers.emplace_back("X-Raft-Last-Contact", std::to_string(since.count()));
  }
  return r;
}

std::optional<std::string> Api::Call::query(std::string_view name) const {
  auto it = params.find(std::string(name));
  if (it == params.end())
    return std::nullopt;
  return it->second;
}

bool Api::Call::may(std::string_view resource, bool write) {
  if (!api->options_.auth)
    return true;
  if (!principal) {  // a route open to anyone (Access::kAnyone) asked about a resource
    answer(
        Response::unauthenticated("this cluster needs credentials: Authorization: Bearer <token>"));
    return false;
  }
  if (write ? principal->may_write(resource) : principal->may_read(resource))
    return true;
  answer(Response::error(403, principal->name + (write ? " may not write " : " may not read ") +
                                  std::string(resource)));
  return false;
}

void Api::Call::read(std::function<Response()> read) {
  if (done())  // answered already (a refused permission): nothing more happens
    return;
  auto call = shared_from_this();
  if (std::optional<std::string> why = api->integrity_problem())
    return answer(api->with_raft_headers(Response::unavailable(*why), false));
  const auto level_it = params.find("level");
  std::string level = level_it == params.end() ? "stale" : level_it->second;
  std::optional<std::chrono::milliseconds> max_lag;
  if (auto lag = params.find("max_lag"); lag != params.end() && level != "linearizable") {
    auto parsed = parse_duration(lag->second);
    if (!parsed.ok())
      return answer(Response::error(400, "max_lag: " + parsed.status().message()));
    max_lag = *parsed;
  }
  if (level == "auto") {
    // A learner's copy is what it is for; a follower's, while it is in touch with the leader it
    // knows (within max_lag, or an election timeout) and has applied what that leader told it
    // is committed; anything else asks the leader.
    const ReplicaStatus st = api->node_->replica_status();
    const auto recent = max_lag.value_or(api->options_.recent_contact);
    const bool in_touch = !st.leader.empty() && st.applied_index >= st.commit_index &&
                          Clock::now() - api->node_->leader_contact() <= recent;
    level = st.role == "learner" || (st.role == "follower" && in_touch) ? "stale" : "linearizable";
    read = [read = std::move(read), level] {
      Response r = read();
      r.headers.emplace_back("X-Raft-Read-Level", level);
      return r;
    };
    if (level == "linearizable")
      max_lag.reset();
  }
  if (level == "stale") {
    if (max_lag) {
      if (Clock::now() - api->node_->leader_contact() > *max_lag) {
        return answer(api->with_raft_headers(
            Response::unavailable("this node has not heard from a leader within max_lag " +
                                  format_duration(*max_lag)),
            true));
      }
    }
    if (!Server::on_server_thread()) {
      // Started elsewhere (a blocking query, woken on the key-value hub's thread): the read
      // runs on the server thread that took the request, as a read always does.
      return api->server_->post(thread, [call, read = std::move(read)] {
        if (!call->done())
          call->guarded([&] { call->answer(call->api->with_raft_headers(read(), true)); });
      });
    }
    return guarded([&] { answer(api->with_raft_headers(read(), true)); });
  }
  if (level != "linearizable") {
    return answer(
        Response::error(400, "level must be stale, linearizable or auto, not '" + level + "'"));
  }
  api->deadline(call, Expiry::kNotDone, "the read could not be confirmed with the leader in time");
  api->node_->read_barrier([call, read = std::move(read), thread = this->thread](Status s) mutable {
    if (!s.ok())
      return call->api->fail(call, s);
    // The raft loop only confirms the read index; the read itself runs on the server thread
    // that took the request.
    call->api->server_->post(thread, [call, read = std::move(read)] {
      // Answered already (the deadline passed): a read now would be thrown away, and one
      // that holds something (a watch) would hold it for nobody.
      if (call->done())
        return;
      call->guarded([&] { call->answer(call->api->with_raft_headers(read(), false)); });
    });
  });
}

void Api::Call::write(std::string command, std::function<Response(const Outcome&)> make_answer) {
  if (done())  // answered already (a refused permission, an earlier write): nothing is proposed
    return;
  auto call = shared_from_this();
  std::string request_id(http_request.header("Idempotency-Key"));
  if (request_id.size() > defaults::kMaxRequestIdBytes) {
    return answer(Response::error(400, "Idempotency-Key is longer than " +
                                           std::to_string(defaults::kMaxRequestIdBytes) +
                                           " bytes"));
  }
  // Each principal has keys of its own: one cannot spoil, or probe, another's.
  if (!request_id.empty() && principal)
    request_id = principal->name + '\n' + request_id;
  api->deadline(call, Expiry::kOutcomeUnknown,
                "the write did not commit in time; it may still be applied: retry with the same "
                "Idempotency-Key");
  api->node_->propose(
      std::move(command), std::move(request_id),
      [call, make_answer = std::move(make_answer)](Result<Outcome> r) {
        Api* api = call->api;
        if (!r.ok())
          return api->fail(call, r.status());
        // The state machine refused the command: the request's fault (Conflict: its id was
        // used for another), or (Busy) the state it was prepared against changed.
        const Status& refused = r->result.status;
        if (refused.code() == Status::Code::kConflict)
          return api->fail(call, refused);
        if (refused.code() == Status::Code::kBusy)
          return call->answer(Response::error(409, refused.message()));
        if (!refused.ok())
          return call->answer(Response::error(400, refused.message()));
        call->guarded([&] { call->answer(api->with_raft_headers(make_answer(*r), false)); });
      });
}

}  // namespace raftnginx::http
