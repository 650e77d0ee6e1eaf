#include "kv/kv_routes.h"

#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

#include "util/clock.h"
#include "util/duration.h"

namespace raftnginx::kv {
namespace {

using json = nlohmann::json;
using fsm::KvCompare;
using fsm::KvOp;
using fsm::KvRecord;

// The longest TTL a key may have.
constexpr size_t kMaxLookupKey = 4096;
constexpr std::chrono::milliseconds kMaxTtl = std::chrono::hours(24 * 365);

json revisions(const KvRecord& r) {
  json j{{"create_index", r.create_index}, {"mod_index", r.mod_index}, {"version", r.version}};
  if (r.expires_at_ms != 0)
    j["expires_at"] = r.expires_at_ms;
  return j;
}

json detailed(const std::string& key, const KvRecord& r, bool with_value) {
  json j{{"key", key}};
  if (with_value)
    j["value"] = r.value;
  j.update(revisions(r));
  return j;
}

void add_revision_headers(http::Response* r, const KvRecord& record) {
  r->headers.emplace_back("X-Raft-Mod-Index", std::to_string(record.mod_index));
  r->headers.emplace_back("X-Raft-Create-Index", std::to_string(record.create_index));
  r->headers.emplace_back("X-Raft-Version", std::to_string(record.version));
}

// ?ttl=D, in ms; 0 without one.
Result<uint64_t> ttl_of(const Exchange& ex) {
  std::optional<std::string> ttl = ex.query("ttl");
  if (!ttl)
    return uint64_t{0};
  auto d = parse_duration(*ttl, kMaxTtl);
  if (!d.ok())
    return Status::invalid_argument("ttl: " + d.status().message());
  if (d->count() <= 0)
    return Status::invalid_argument("ttl must be longer than 0");
  return static_cast<uint64_t>(d->count());
}

// ?cas=N as a compare. 0 holds for an absent key, and for one written before revisions (whose
// mod_index is 0), so that such a key too can be changed by compare-and-set.
Result<std::vector<KvCompare>> cas_of(const Exchange& ex, const std::string& key) {
  std::optional<std::string> cas = ex.query("cas");
  if (!cas)
    return std::vector<KvCompare>();
  auto n = parse_count("cas", *cas);
  if (!n.ok())
    return n.status();
  return std::vector<KvCompare>{KvCompare{key, KvCompare::Field::kModIndex, *n, {}}};
}

// The result of an applied command, or the answer to give if it is not known.
Result<fsm::KvResult> result_of(const Outcome& outcome) {
  if (!outcome.result_known) {
    return Status::conflict("the request was applied at index " + std::to_string(outcome.index) +
                            ", but its result was lost in a restart: read the keys to see it");
  }
  auto result = fsm::decode_kv_result(outcome.result.value);
  if (!result.ok())
    return Status::io_error("the store's result is malformed");
  return result;
}

http::Response unknown_result(const Status& why) {
  return http::Response::error(why.code() == Status::Code::kConflict ? 409 : 500, why.message());
}

// What a read of keys needs: the store, the hub that knows its changes, and how long a blocking
// query may wait.
struct Reads {
  const fsm::KvStore* kv;
  std::shared_ptr<WatchHub> hub;
  std::chrono::milliseconds max_wait;
};

// A blocking query (?index=N&wait=D): runs `read` once something under `prefix` changed after
// index N, or when the wait ends. False if the request is not one (no index).
bool blocking(const ExchangePtr& ex, const Reads& reads, const std::string& prefix, bool exact,
              std::function<http::Response()> read) {
  std::optional<std::string> index_text = ex->query("index");
  if (!index_text)
    return false;
  auto index = parse_count("index", *index_text);
  if (!index.ok()) {
    ex->respond(http::Response::error(400, index.status().message()));
    return true;
  }
  auto wait =
      parse_duration(ex->query("wait").value_or(format_duration(reads.max_wait)), reads.max_wait);
  if (!wait.ok()) {
    ex->respond(http::Response::error(400, "wait: " + wait.status().message()));
    return true;
  }
  Status s = reads.hub->wait(prefix, exact, *index, std::chrono::steady_clock::now() + *wait,
                             [ex, read = std::move(read)] { ex->read(read); });
  if (!s.ok())
    ex->respond(http::Response::unavailable(s.message()));
  return true;
}

// GET /key/{key}
void get_key(const Reads& reads, const ExchangePtr& ex) {
  const std::string& key = ex->path_tail();
  if (key.empty())
    return ex->respond(http::Response::error(400, "empty key"));
  if (!ex->may_read(key))
    return;
  const bool with_details = ex->query("detailed").has_value();
  auto read = [kv = reads.kv, key, with_details, replica = &ex->replica()]() -> http::Response {
    // The index before the read: the state read holds at least this. Taken after, it could
    // name a change the read missed, and a blocking query from it would wait past that change.
    const raft::Index index = replica->applied_index();
    auto found = kv->get(key);
    if (!found.ok())
      return http::Response::error(500, found.status().to_string());
    if (!*found || (*found)->expired_at(raftnginx::Clock::real()->wall_ms()))
      return http::Response::error(404, "key not found: " + key);
    const KvRecord& r = **found;
    http::Response response =
        http::Response::json(200, with_details ? detailed(key, r, true) : json{{key, r.value}});
    add_revision_headers(&response, r);
    response.headers.emplace_back("X-Raft-Index", std::to_string(index));
    return response;
  };
  if (!blocking(ex, reads, key, true, read))
    ex->read(read);
}

// GET /check?set=NAME[&absent][&hash=sha256], the key in X-Raft-Lookup-Key (or &key=): 204 if
// the key (or, with &hash, its SHA-256 in hex, so that the set holds no secret) is in the set
// (the keys under sets/NAME/) or, with &absent, if it is not; 403 otherwise. For nginx's
// auth_request, which reaches it over the daemon's Unix socket: there it needs no credential
// (the socket is the local gateway's, and its lookups pass no client header), elsewhere, and for
// a client's request the gateway relays, read permission on the set.
void check_member(const Reads& reads, const ExchangePtr& ex) {
  const std::string set = ex->query("set").value_or("");
  bool named = !set.empty() && set.size() <= 64;
  for (const char c : set)
    named = named && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
  if (!named)
    return ex->respond(http::Response::error(400, "set must be 1 to 64 of A-Z a-z 0-9 _ -"));
  const std::string_view header = ex->request().header("X-Raft-Lookup-Key");
  const std::string key = header.empty() ? ex->query("key").value_or("") : std::string(header);
  // The gateway's own lookups come over the socket without X-Raft-Gateway, which nginx puts on
  // every request it relays for a client: such a request is the client's, and needs its right.
  const bool lookup =
      ex->request().remote == "unix" && ex->request().header("X-Raft-Gateway").empty();
  if (!lookup && !ex->may_read("sets/" + set + "/"))
    return;
  const bool want_present = !ex->query("absent").has_value();
  const std::optional<std::string> hash = ex->query("hash");
  if (hash && *hash != "sha256")
    return ex->respond(http::Response::error(400, "hash must be sha256"));
  // No key (a client that sent none) or one too long for any set is in none.
  const std::string name = key.empty() || key.size() > kMaxLookupKey
                               ? std::string()
                               : "sets/" + set + "/" + (hash ? http::sha256_hex(key) : key);
  ex->read([kv = reads.kv, name, want_present]() -> http::Response {
    auto found = name.empty() ? Result<std::optional<KvRecord>>(std::nullopt) : kv->get(name);
    if (!found.ok())
      return http::Response::error(500, found.status().to_string());
    const bool present = *found && !(*found)->expired_at(raftnginx::Clock::real()->wall_ms());
    http::Response r;
    r.status = present == want_present ? 204 : 403;
    return r;
  });
}

// GET /key?prefix=P
void list_keys(const Reads& reads, const ExchangePtr& ex) {
  const std::string prefix = ex->query("prefix").value_or("");
  if (!ex->may_read(prefix))
    return;
  uint64_t limit = defaults::kMaxListKeys;
  if (std::optional<std::string> text = ex->query("limit")) {
    auto n = parse_count("limit", *text);
    if (!n.ok() || *n == 0 || *n > defaults::kMaxListKeys) {
      return ex->respond(http::Response::error(
          400, "limit must be a whole number from 1 to " + std::to_string(defaults::kMaxListKeys)));
    }
    limit = *n;
  }
  const std::string after = ex->query("after").value_or("");
  const bool keys_only = ex->query("keys").has_value();
  const bool with_details = ex->query("detailed").has_value();
  auto read = [=, kv = reads.kv]() -> http::Response {
    auto page = kv->list(prefix, after, limit, defaults::kMaxListBytes, keys_only,
                         raftnginx::Clock::real()->wall_ms());
    if (!page.ok())
      return http::Response::error(500, page.status().to_string());
    json body = keys_only || with_details ? json::array() : json::object();
    for (const auto& [key, record] : page->entries) {
      if (with_details)
        body.push_back(detailed(key, record, !keys_only));
      else if (keys_only)
        body.push_back(key);
      else
        body[key] = record.value;
    }
    http::Response response = http::Response::json(200, body);
    // The index of the view the page was read from: a watch from the next one misses nothing.
    response.headers.emplace_back("X-Raft-Index", std::to_string(page->index));
    if (page->truncated)
      response.headers.emplace_back("X-Raft-Truncated", "true");
    return response;
  };
  if (!blocking(ex, reads, prefix, false, read))
    ex->read(read);
}

// Proposes `cmd`, through `gateway`'s check if it touches the gateways' files.
void propose(GatewayWrites& gateway, const ExchangePtr& ex, fsm::KvCommand cmd,
             std::function<http::Response(const Outcome&)> answer) {
  if (touches_gateway(cmd))
    return gateway.write(ex, std::move(cmd), std::move(answer));
  ex->write(fsm::encode_kv_command(cmd), std::move(answer));
}

// Proposes `cmd`; answers 200 {} with the written revision, or 412 if a compare failed.
void write(GatewayWrites& gateway, const ExchangePtr& ex, fsm::KvCommand cmd) {
  propose(gateway, ex, std::move(cmd), [](const Outcome& outcome) {
    auto result = result_of(outcome);
    if (!result.ok())
      return unknown_result(result.status());
    if (!result->succeeded) {
      const fsm::KvOpResult& current = result->results.at(0);
      const raft::Index mod_index = current.found ? current.record.mod_index : 0;
      return http::Response::json(
          412, json{{"error", current.found ? "the key's mod_index is " + std::to_string(mod_index)
                                            : std::string("the key does not exist")},
                    {"mod_index", mod_index}});
    }
    http::Response response = http::Response::json(200, json::object());
    response.headers.emplace_back("X-Raft-Mod-Index", std::to_string(outcome.index));
    return response;
  });
}

// POST /key: {"k": "v", ...}
void set_keys(GatewayWrites& gateway, const ExchangePtr& ex) {
  json doc = json::parse(ex->request().body, nullptr, false);
  if (doc.is_discarded())
    return ex->respond(http::Response::error(400, "request body is not valid JSON"));
  if (!doc.is_object())
    return ex->respond(http::Response::error(400, "request body must be a JSON object"));
  auto ttl = ttl_of(*ex);
  if (!ttl.ok())
    return ex->respond(http::Response::error(400, ttl.status().message()));
  fsm::KvCommand cmd;
  for (const auto& [key, value] : doc.items()) {
    if (key.empty())
      return ex->respond(http::Response::error(400, "empty key"));
    if (!value.is_string()) {
      return ex->respond(
          http::Response::error(400, "the value of \"" + key + "\" must be a string"));
    }
    if (!ex->may_write(key))
      return;
    cmd.success.push_back(KvOp{KvOp::Kind::kPut, key, value.get<std::string>(), *ttl});
  }
  if (cmd.success.empty())
    return ex->respond(http::Response::error(400, "no keys to set"));
  write(gateway, ex, std::move(cmd));
}

// PUT and DELETE /key/{key}
void change_key(GatewayWrites& gateway, const ExchangePtr& ex, KvOp::Kind kind) {
  const std::string& key = ex->path_tail();
  if (key.empty())
    return ex->respond(http::Response::error(400, "empty key"));
  auto compares = cas_of(*ex, key);
  if (!compares.ok())
    return ex->respond(http::Response::error(400, compares.status().message()));
  uint64_t ttl = 0;
  if (kind == KvOp::Kind::kPut) {
    auto parsed = ttl_of(*ex);
    if (!parsed.ok())
      return ex->respond(http::Response::error(400, parsed.status().message()));
    ttl = *parsed;
  } else if (ex->query("ttl")) {
    return ex->respond(http::Response::error(400, "a delete takes no ttl"));
  }
  // A compare tells whether the key exists and its revision: that is a read.
  if (!ex->may_write(key) || (!compares->empty() && !ex->may_read(key)))
    return;
  fsm::KvCommand cmd;
  cmd.compares = std::move(compares).value();
  cmd.success.push_back(KvOp{kind, key, kind == KvOp::Kind::kPut ? ex->request().body : "", ttl});
  cmd.failure.push_back(KvOp{KvOp::Kind::kGet, key, {}, 1});  // the revision, not the value
  write(gateway, ex, std::move(cmd));
}

// POST /txn: the body's grammar, checked whole before anything is proposed.
//   {"compare": [{"key": K, one of "mod_index": N | "version": N | "value": V | "exists": B}],
//    "success": [op], "failure": [op]}
//   op: {"op": "put", "key": K, "value": V, "ttl"?: D} | {"op": "delete", "key": K}
//       | {"op": "delete_prefix", "prefix": P} | {"op": "get", "key": K}
class TxnParser {
 public:
  explicit TxnParser(Exchange& ex) : ex_(ex) {}

  // The command, or the 400 to answer (or nothing, if a permission was refused and answered).
  std::optional<fsm::KvCommand> parse(const std::string& body) {
    json doc = json::parse(body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
      return fail("the body must be a JSON object");
    for (const auto& [name, value] : doc.items()) {
      if (name != "compare" && name != "success" && name != "failure")
        return fail("unknown field \"" + name + "\"");
      if (!value.is_array())
        return fail("\"" + name + "\" must be an array");
    }
    fsm::KvCommand cmd;
    for (const json& c : doc.value("compare", json::array())) {
      if (!compare(c, &cmd.compares))
        return std::nullopt;
    }
    for (const char* branch : {"success", "failure"}) {
      for (const json& op : doc.value(branch, json::array())) {
        if (!this->op(op, branch[0] == 's' ? &cmd.success : &cmd.failure))
          return std::nullopt;
      }
    }
    const size_t total = cmd.compares.size() + cmd.success.size() + cmd.failure.size();
    if (total > fsm::kMaxTxnOps) {
      return fail("a transaction takes at most " + std::to_string(fsm::kMaxTxnOps) +
                  " compares and ops, not " + std::to_string(total));
    }
    if (cmd.success.empty() && cmd.failure.empty())
      return fail("a transaction needs at least one op");
    return cmd;
  }

 private:
  std::nullopt_t fail(const std::string& why) {
    ex_.respond(http::Response::error(400, "txn: " + why));
    return std::nullopt;
  }

  // A non-empty string field.
  std::optional<std::string> key_of(const json& j, const char* field) {
    auto it = j.find(field);
    if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
      fail(std::string("\"") + field + "\" must be a non-empty string");
      return std::nullopt;
    }
    return it->get<std::string>();
  }

  bool compare(const json& c, std::vector<KvCompare>* out) {
    if (!c.is_object() || c.size() != 2) {
      fail("a compare is {\"key\": K} and one of mod_index, version, value or exists");
      return false;
    }
    std::optional<std::string> key = key_of(c, "key");
    if (!key || !ex_.may_read(*key))
      return false;
    KvCompare cmp{*key, KvCompare::Field::kModIndex, 0, {}};
    if (auto it = c.find("mod_index"); it != c.end() && it->is_number_unsigned()) {
      cmp.number = it->get<uint64_t>();
    } else if (auto v = c.find("version"); v != c.end() && v->is_number_unsigned()) {
      cmp.field = KvCompare::Field::kVersion;
      cmp.number = v->get<uint64_t>();
    } else if (auto s = c.find("value"); s != c.end() && s->is_string()) {
      cmp.field = KvCompare::Field::kValue;
      cmp.value = s->get<std::string>();
    } else if (auto e = c.find("exists"); e != c.end() && e->is_boolean()) {
      cmp.field = KvCompare::Field::kExists;
      cmp.number = e->get<bool>() ? 1 : 0;
    } else {
      fail(
          "a compare takes one of \"mod_index\" or \"version\" (whole numbers), \"value\" (a "
          "string) or \"exists\" (a boolean)");
      return false;
    }
    out->push_back(std::move(cmp));
    return true;
  }

  bool op(const json& o, std::vector<KvOp>* out) {
    if (!o.is_object() || !o.contains("op") || !o["op"].is_string()) {
      fail("an op is an object with \"op\": put, delete, delete_prefix or get");
      return false;
    }
    const std::string kind = o["op"].get<std::string>();
    const auto only = [&](std::initializer_list<std::string_view> fields) {
      for (const auto& item : o.items()) {
        const std::string& name = item.key();
        if (name != "op" && std::find(fields.begin(), fields.end(), name) == fields.end()) {
          fail("unknown field \"" + name + "\" in a " + kind + " op");
          return false;
        }
      }
      return true;
    };
    if (kind == "put") {
      if (!only({"key", "value", "ttl"}))
        return false;
      std::optional<std::string> key = key_of(o, "key");
      if (!key)
        return false;
      auto value = o.find("value");
      if (value == o.end() || !value->is_string()) {
        fail("a put's \"value\" must be a string");
        return false;
      }
      uint64_t ttl = 0;
      if (auto t = o.find("ttl"); t != o.end()) {
        auto d = t->is_string() ? parse_duration(t->get<std::string>(), kMaxTtl)
                                : Status::invalid_argument("not a string");
        if (!d.ok() || d->count() <= 0) {
          fail("a put's \"ttl\" must be a duration such as \"30s\"");
          return false;
        }
        ttl = static_cast<uint64_t>(d->count());
      }
      if (!ex_.may_write(*key))
        return false;
      out->push_back(KvOp{KvOp::Kind::kPut, *key, value->get<std::string>(), ttl});
    } else if (kind == "delete" || kind == "get") {
      if (!only({"key"}))
        return false;
      std::optional<std::string> key = key_of(o, "key");
      if (!key || !(kind == "get" ? ex_.may_read(*key) : ex_.may_write(*key)))
        return false;
      out->push_back(KvOp{kind == "get" ? KvOp::Kind::kGet : KvOp::Kind::kDelete, *key, {}, 0});
    } else if (kind == "delete_prefix") {
      if (!only({"prefix"}))
        return false;
      auto prefix = o.find("prefix");
      if (prefix == o.end() || !prefix->is_string()) {
        fail("a delete_prefix's \"prefix\" must be a string");
        return false;
      }
      // A prefix that takes in the gateways' files needs the right to write them too.
      if (!ex_.may_write(prefix->get<std::string>()) ||
          (kGatewayPrefix.starts_with(prefix->get<std::string>()) &&
           !ex_.may_write(kGatewayPrefix)))
        return false;
      out->push_back(KvOp{KvOp::Kind::kDeletePrefix, prefix->get<std::string>(), {}, 0});
    } else {
      fail("unknown op \"" + kind + "\"");
      return false;
    }
    return true;
  }

  Exchange& ex_;
};

const char* op_name(KvOp::Kind kind) {
  switch (kind) {
    case KvOp::Kind::kPut:
      return "put";
    case KvOp::Kind::kDelete:
      return "delete";
    case KvOp::Kind::kDeletePrefix:
      return "delete_prefix";
    case KvOp::Kind::kGet:
      return "get";
    case KvOp::Kind::kExpire:
      return "expire";
  }
  return "?";
}

// POST /txn
void txn(GatewayWrites& gateway, const ExchangePtr& ex) {
  std::optional<fsm::KvCommand> cmd = TxnParser(*ex).parse(ex->request().body);
  if (!cmd)
    return;
  propose(gateway, ex, *cmd, [cmd = *cmd](const Outcome& outcome) {
    auto result = result_of(outcome);
    if (!result.ok())
      return unknown_result(result.status());
    const std::vector<KvOp>& ops = result->succeeded ? cmd.success : cmd.failure;
    json results = json::array();
    for (size_t i = 0; i < ops.size() && i < result->results.size(); ++i) {
      const KvOp& op = ops[i];
      const fsm::KvOpResult& r = result->results[i];
      json j{{"op", op_name(op.kind)},
             {op.kind == KvOp::Kind::kDeletePrefix ? "prefix" : "key", op.key}};
      if (op.kind == KvOp::Kind::kPut) {
        j.update(revisions(r.record));
      } else if (op.kind == KvOp::Kind::kGet) {
        j["found"] = r.found;
        if (r.found && r.deleted == 0)
          j["value"] = r.record.value;
        if (r.found && r.deleted != 0)
          j["value_omitted"] = true;  // over the values one transaction may return
        if (r.found)
          j.update(revisions(r.record));
      } else {
        j["deleted"] = r.deleted;
        if (op.kind == KvOp::Kind::kDeletePrefix && r.found)
          j["more"] = true;  // one op removes at most kMaxDeletePrefixKeys: send it again
      }
      results.push_back(std::move(j));
    }
    return http::Response::json(
        200,
        json{{"succeeded", result->succeeded}, {"index", outcome.index}, {"results", results}});
  });
}

// GET /watch?prefix=P&from=N
void watch(WatchHub& hub, const ExchangePtr& ex) {
  const std::string prefix = ex->query("prefix").value_or("");
  if (!ex->may_read(prefix))
    return;
  raft::Index from = 0;
  if (std::optional<std::string> text = ex->query("from")) {
    auto n = parse_count("from", *text);
    if (!n.ok())
      return ex->respond(http::Response::error(400, n.status().message()));
    from = *n;
  } else if (std::string_view last = ex->request().header("Last-Event-ID"); !last.empty()) {
    // A browser's EventSource reconnecting: on from the index after the last one it saw.
    auto n = parse_count("Last-Event-ID", last);
    if (!n.ok() || *n == UINT64_MAX)
      return ex->respond(http::Response::error(400, "Last-Event-ID must be an index"));
    from = *n + 1;
  }
  const bool sse = ex->request().header("Accept").find("text/event-stream") != std::string::npos;
  ex->read([&hub, prefix, from, sse]() -> http::Response {
    auto stream = hub.watch(prefix, from, sse ? WatchFormat::kEventStream : WatchFormat::kNdjson);
    if (!stream.ok()) {
      if (stream.status().code() == Status::Code::kCompacted) {
        return http::Response::json(
            410, json{{"error", stream.status().message() + ": list again, then watch from the "
                                                            "listing's X-Raft-Index + 1"},
                      {"compacted_index", hub.compacted_index()}});
      }
      return http::Response::unavailable(stream.status().message());
    }
    http::Response response;
    response.headers = {{"Content-Type", sse ? "text/event-stream" : "application/x-ndjson"},
                        {"Cache-Control", "no-cache"},
                        {"X-Accel-Buffering", "no"}};  // nginx passes each piece on at once
    response.stream = std::move(stream).value();
    return response;
  });
}

}  // namespace

Result<uint64_t> parse_count(std::string_view name, std::string_view text) {
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    return Status::invalid_argument(std::string(name) + " must be a whole number, not '" +
                                    std::string(text) + "'");
  return value;
}

std::vector<Route> kv_routes(const fsm::KvStore* kv, std::shared_ptr<WatchHub> hub,
                             std::chrono::milliseconds max_wait,
                             std::shared_ptr<GatewayWrites> gateway) {
  const auto reads = std::make_shared<const Reads>(Reads{kv, hub, max_wait});
  return {
      {"GET", "/key", Access::kPrincipal, [reads](ExchangePtr ex) { list_keys(*reads, ex); }},
      {"GET", "/key/{key}", Access::kPrincipal, [reads](ExchangePtr ex) { get_key(*reads, ex); }},
      {"POST", "/key", Access::kPrincipal, [gateway](ExchangePtr ex) { set_keys(*gateway, ex); }},
      {"PUT", "/key/{key}", Access::kPrincipal,
       [gateway](ExchangePtr ex) { change_key(*gateway, ex, KvOp::Kind::kPut); }},
      {"DELETE", "/key/{key}", Access::kPrincipal,
       [gateway](ExchangePtr ex) { change_key(*gateway, ex, KvOp::Kind::kDelete); }},
      {"POST", "/txn", Access::kPrincipal, [gateway](ExchangePtr ex) { txn(*gateway, ex); }},
      {"GET", "/watch", Access::kPrincipal, [reads](ExchangePtr ex) { watch(*reads->hub, ex); }},
      {"GET", "/check", Access::kAnyone, [reads](ExchangePtr ex) { check_member(*reads, ex); }},
  };
}

}  // namespace raftnginx::kv
