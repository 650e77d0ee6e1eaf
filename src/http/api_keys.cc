// The key routes: hraftd's /key, read levels, and writes through the node.
#include "fsm/kv_command.h"
#include "http/api.h"
#include "http/api_json.h"
#include "util/duration.h"

namespace raftnginx::http {

using Clock = std::chrono::steady_clock;

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
  if (!may_read(call, key))
    return;
  if (std::optional<std::string> why = integrity_problem())
    return call->answer(with_raft_headers(Response::unavailable(*why), false));
  auto read = [this, call, key](bool stale) {
    auto value = kv_->get(key);
    if (!value.ok())
      return fail(call, value.status());
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
      if (Clock::now() - node_->leader_contact() > *max_lag) {
        return call->answer(with_raft_headers(
            Response::unavailable("this node has not heard from a leader within max_lag " +
                                  lag->second),
            true));
      }
    }
    return read(true);
  }
  if (level != "linearizable") {
    return call->answer(
        Response::error(400, "level must be stale or linearizable, not '" + level + "'"));
  }
  deadline(call, Expiry::kNotDone, "the read could not be confirmed with the leader in time");
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
    if (!may_write(call, key))
      return;
    cmd.pairs.emplace_back(key, value.get<std::string>());
  }
  if (cmd.pairs.empty())
    return call->answer(Response::error(400, "no keys to set"));
  propose(call, fsm::encode_kv_command(cmd));
}

void Api::put_key(const CallPtr& call, const std::string& key) {
  if (!may_write(call, key))
    return;
  fsm::KvCommand cmd;
  cmd.pairs.emplace_back(key, call->request.body);
  propose(call, fsm::encode_kv_command(cmd));
}

void Api::delete_key(const CallPtr& call, const std::string& key) {
  if (!may_write(call, key))
    return;
  fsm::KvCommand cmd;
  cmd.op = fsm::KvCommand::Op::kDelete;
  cmd.keys.push_back(key);
  propose(call, fsm::encode_kv_command(cmd));
}

void Api::propose(const CallPtr& call, std::string command) {
  std::string request_id(call->request.header("Idempotency-Key"));
  if (request_id.size() > defaults::kMaxRequestIdBytes) {
    return call->answer(Response::error(400, "Idempotency-Key is longer than " +
                                                 std::to_string(defaults::kMaxRequestIdBytes) +
                                                 " bytes"));
  }
  // Each principal has keys of its own: one cannot spoil, or probe, another's.
  if (!request_id.empty() && call->principal)
    request_id = call->principal->name + '\n' + request_id;
  deadline(call, Expiry::kOutcomeUnknown,
           "the write did not commit in time; it may still be applied: retry with the same "
           "Idempotency-Key");
  node_->propose(std::move(command), std::move(request_id), [this, call](Result<node::Outcome> r) {
    if (!r.ok())
      return fail(call, r.status());
    // The state machine refused the command: the request's fault.
    const Status& refused = r->result.status;
    if (refused.code() == Status::Code::kConflict)
      return fail(call, refused);
    if (!refused.ok())
      return call->answer(Response::error(400, refused.message()));
    call->answer(with_raft_headers(Response::json(200, json::object()), false));
  });
}

}  // namespace raftnginx::http
