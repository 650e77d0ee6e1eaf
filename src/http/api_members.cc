// Membership routes: /join, /remove, /promote, /leader/transfer.
#include <spdlog/spdlog.h>

#include "http/api.h"
#include "http/api_json.h"

namespace raftnginx::http {

using Clock = std::chrono::steady_clock;

namespace {

// The member named by a membership call's body, {"id": ...}, in cluster/member.h's grammar; ""
// if optional and absent.
Result<std::string> member_id_in(const std::string& body, bool required) {
  if (body.empty() && !required)
    return std::string();
  auto doc = parse_object(body);
  if (!doc.ok())
    return doc.status();
  auto id = string_field(*doc, "id", required);
  if (!id.ok() || id->empty())
    return id;
  if (Status s = cluster::validate_name(*id); !s.ok())
    return s;
  return id;
}

// What a /join body asks for: the member (validated, cluster/member.h), whether it votes, and
// whether it may move an existing member to new addresses.
struct JoinRequest {
  cluster::Member member;
  bool voter = true;
  bool replace = false;
  // A member rebuilding from its peers (raft-nginx repair): it comes back as a learner.
  bool repair = false;
  // The cluster the node's data belongs to; empty: a new node, with no data yet.
  std::string cluster_id;
};

Result<JoinRequest> joining_member(const std::string& body) {
  auto doc = parse_object(body);
  if (!doc.ok())
    return doc.status();
  auto name = string_field(*doc, "id", true);
  auto raft_addr = string_field(*doc, "addr", true);
  auto http_addr = string_field(*doc, "http_addr", false);
  auto cluster_id = string_field(*doc, "cluster_id", false);
  for (const auto* field : {&name, &raft_addr, &http_addr, &cluster_id}) {
    if (!field->ok())
      return field->status();
  }
  JoinRequest join;
  join.member = cluster::Member{*name, *raft_addr, *http_addr};
  join.cluster_id = *cluster_id;
  if (Status s = cluster::validate_member(join.member); !s.ok())
    return s;
  for (auto [field, out] : {std::pair<const char*, bool*>{"voter", &join.voter},
                            {"replace", &join.replace},
                            {"repair", &join.repair}}) {
    if (auto v = doc->find(field); v != doc->end()) {
      if (!v->is_boolean())
        return Status::invalid_argument(std::string("field \"") + field +
                                        "\" must be true or false");
      *out = v->get<bool>();
    }
  }
  return join;
}

}  // namespace

void Api::join(const CallPtr& call) {
  auto joining = joining_member(call->http_request.body);
  if (!joining.ok())
    return call->answer(Response::error(400, joining.status().message()));
  const auto& [member, voter, replace, repair, their_cluster] = *joining;
  const raft::NodeId id = cluster::node_id_for(member.name);
  // A join-only credential may add its own node, under its own name.
  if (call->principal && !call->principal->admin && call->principal->name != member.name) {
    return call->answer(Response::error(403, call->principal->name + " may only join as itself"));
  }
  const node::NodeStatus st = node_->status();
  if (st.raft.role != raft::Role::kLeader)
    return not_leader(call);
  // A node whose data belongs to another cluster (one this cluster was restored from, say)
  // could never talk to this one: added, it would be a member that never answers.
  if (!their_cluster.empty() && their_cluster != cluster_id()) {
    return call->answer(
        Response::json(409, json{{"error", "the data of " + member.name + " belongs to cluster '" +
                                               their_cluster + "', and this is '" + cluster_id() +
                                               "': start it with an empty data directory to join"},
                                 {"cluster_id", cluster_id()}}));
  }
  // A join-only credential adds a learner: it serves reads, but votes (and may lead, and see
  // the writes clients send) only once an admin promotes it.
  const bool join_only = call->principal && !call->principal->admin;
  raft::ConfChange cc{
      voter && !join_only ? raft::ConfChangeType::kAddVoter : raft::ConfChangeType::kAddLearner, id,
      cluster::encode_member(member)};
  if (repair && st.membership.conf.contains(id))
    return rejoin_as_learner(call, member, st.membership.conf.voters.count(id) > 0);
  if (st.membership.conf.contains(id)) {
    const cluster::Member* known = st.membership.find(id);
    if (known != nullptr && !known->name.empty() && known->name != member.name) {
      return call->answer(
          Response::error(409, "id \"" + member.name + "\" collides with member " + known->name));
    }
    if (known != nullptr && *known == member) {
      return call->answer(Response::json(
          200,
          json{{"id", member.name}, {"result", "already a member"}, {"cluster_id", cluster_id()}}));
    }
    // Moving a member takes it away from where it was: only on purpose, and only by an admin.
    if (!replace) {
      return call->answer(Response::error(
          409, member.name + " is a member at other addresses; send \"replace\": true to move it"));
    }
    if (call->principal && !call->principal->admin)
      return call->answer(Response::error(403, "moving a member needs an admin credential"));
    cc.type = raft::ConfChangeType::kUpdateNode;
  }
  if (!options_.verify_joining)
    return change_membership(call, std::move(cc));
  // A member that cannot prove its id on the raft port would only take a vote from the quorum.
  options_.verify_joining(member, [this, call, cc = std::move(cc), name = member.name](Status s) {
    if (!s.ok())
      spdlog::warn("refused to add {}: {}", name, s.message());
    if (s.code() == Status::Code::kUnavailable)
      return call->answer(Response::unavailable(name + " cannot be added: " + s.message()));
    if (!s.ok())
      return call->answer(Response::error(403, name + " cannot be added: " + s.message()));
    change_membership(call, cc);
  });
}

// A member whose state is gone comes back as a learner: a voter that forgot its log and its vote
// must not vote. Removed first (Raft cannot demote in one change), then added as a learner; it
// is promoted back once it caught up (cli/repair.h).
void Api::rejoin_as_learner(const CallPtr& call, const cluster::Member& member, bool was_voter) {
  const raft::NodeId id = cluster::node_id_for(member.name);
  auto add_learner = [this, call, member, id, was_voter] {
    node_->change_membership(
        raft::ConfChange{raft::ConfChangeType::kAddLearner, id, cluster::encode_member(member)},
        [this, call, member, was_voter](Result<Outcome> r) {
          if (!r.ok())
            return fail(call, r.status());
          spdlog::info("membership changed: {} rejoined as a learner to be rebuilt", member.name);
          call->answer(Response::json(200, json{{"id", member.name},
                                                {"result", "rejoined as a learner"},
                                                {"was_voter", was_voter}}));
        });
  };
  if (!was_voter) {  // a learner already: only its record may need updating
    return change_membership(call, raft::ConfChange{raft::ConfChangeType::kUpdateNode, id,
                                                    cluster::encode_member(member)});
  }
  deadline(call, Expiry::kOutcomeUnknown,
           "the membership change did not commit in time; it may still be applied");
  node_->change_membership(raft::ConfChange{raft::ConfChangeType::kRemoveNode, id, {}},
                           [this, call, add_learner](Result<Outcome> r) {
                             if (!r.ok())
                               return fail(call, r.status());
                             add_learner();
                           });
}

void Api::remove(const CallPtr& call) {
  auto name = member_id_in(call->http_request.body, true);
  if (!name.ok())
    return call->answer(Response::error(400, name.status().message()));
  const raft::NodeId id = node_->status().membership.id_of(*name);
  if (id == raft::kNoNode)
    return call->answer(Response::error(404, "no member named " + *name));
  change_membership(call, raft::ConfChange{raft::ConfChangeType::kRemoveNode, id, {}});
}

void Api::promote(const CallPtr& call) {
  auto name = member_id_in(call->http_request.body, true);
  if (!name.ok())
    return call->answer(Response::error(400, name.status().message()));
  const node::NodeStatus st = node_->status();
  const raft::NodeId id = st.membership.id_of(*name);
  if (id == raft::kNoNode)
    return call->answer(Response::error(404, "no member named " + *name));
  if (st.membership.conf.voters.count(id))
    return call->answer(Response::error(409, *name + " is already a voter"));
  const cluster::Member* record = st.membership.find(id);
  change_membership(call, raft::ConfChange{raft::ConfChangeType::kAddVoter, id,
                                           record ? cluster::encode_member(*record) : ""});
}

void Api::change_membership(const CallPtr& call, raft::ConfChange cc) {
  deadline(call, Expiry::kOutcomeUnknown,
           "the membership change did not commit in time; it may still be applied");
  const raft::NodeId id = cc.node;
  const raft::ConfChangeType type = cc.type;
  node_->change_membership(std::move(cc), [this, call, id, type](Result<Outcome> r) {
    if (!r.ok())
      return fail(call, r.status());
    const node::NodeStatus st = node_->status();
    spdlog::info("membership changed: {} {} (term {})", raft::conf_change_type_name(type),
                 st.membership.name_of(id), st.raft.hard_state.term);
    json members = json::array();
    for (raft::NodeId m : st.membership.conf.voters)
      members.push_back(member_json(m, st));
    for (raft::NodeId m : st.membership.conf.learners)
      members.push_back(member_json(m, st));
    call->answer(Response::json(200, json{{"id", st.membership.name_of(id)},
                                          {"members", members},
                                          {"cluster_id", cluster_id()}}));
  });
}

void Api::transfer(const CallPtr& call) {
  const node::NodeStatus st = node_->status();
  if (st.raft.role != raft::Role::kLeader)
    return not_leader(call);
  auto name = member_id_in(call->http_request.body, false);
  if (!name.ok())
    return call->answer(Response::error(400, name.status().message()));
  raft::NodeId target = raft::kNoNode;
  if (!name->empty()) {
    target = st.membership.id_of(*name);
    if (target == raft::kNoNode || !st.membership.conf.voters.count(target))
      return call->answer(Response::error(404, "no voter named " + *name));
  } else {
    target = cluster::best_transfer_target(st.raft);
    if (target == raft::kNoNode)
      return call->answer(Response::error(409, "no other voter to hand leadership to"));
  }
  if (target == st.raft.id)
    return call->answer(Response::json(200, json{{"leader", st.membership.name_of(target)}}));
  node_->transfer_leadership(target, [this, call, target](Status s) {
    if (!s.ok())
      return fail(call, s);
    wait_for_leader(call, target, Clock::now() + options_.write_timeout);
  });
}

void Api::wait_for_leader(const CallPtr& call, raft::NodeId target, Clock::time_point until) {
  const node::NodeStatus st = node_->status();
  if (st.raft.leader == target)
    return call->answer(Response::json(200, json{{"leader", st.membership.name_of(target)}}));
  if (Clock::now() >= until)
    return call->answer(Response::unavailable("leadership did not move in time"));
  server_->after(std::chrono::milliseconds(20),
                 [this, call, target, until] { wait_for_leader(call, target, until); });
}

}  // namespace raftnginx::http
