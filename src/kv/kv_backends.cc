#include "kv/kv_backends.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "fsm/kv_command.h"
#include "fsm/memory_kv.h"
#include "fsm/rocksdb_kv.h"
#include "util/duration.h"

namespace raftnginx::kv {
namespace {

using json = nlohmann::json;

constexpr const char* kFlushEntriesFlag = "--fsm-flush-entries";
constexpr const char* kFlushIntervalFlag = "--fsm-flush-interval";

Result<uint64_t> parse_count(std::string_view text) {
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    return Status::invalid_argument("'" + std::string(text) + "' is not a whole number");
  return value;
}

// GET /key/{key}
void get_key(const fsm::KvStore* kv, const std::shared_ptr<Exchange>& ex) {
  const std::string& key = ex->path_tail();
  if (key.empty())
    return ex->respond(http::Response::error(400, "empty key"));
  if (!ex->may_read(key))
    return;
  ex->read([kv, key]() -> http::Response {
    auto value = kv->get(key);
    if (!value.ok())
      return http::Response::error(500, value.status().to_string());
    if (!*value)
      return http::Response::error(404, "key not found: " + key);
    return http::Response::json(200, json{{key, **value}});
  });
}

// Writes answer {} once applied.
void write(const std::shared_ptr<Exchange>& ex, const fsm::KvCommand& cmd) {
  ex->write(fsm::encode_kv_command(cmd),
            [](const Outcome&) { return http::Response::json(200, json::object()); });
}

// POST /key: {"k": "v", ...}
void set_keys(const std::shared_ptr<Exchange>& ex) {
  json doc = json::parse(ex->request().body, nullptr, false);
  if (doc.is_discarded())
    return ex->respond(http::Response::error(400, "request body is not valid JSON"));
  if (!doc.is_object())
    return ex->respond(http::Response::error(400, "request body must be a JSON object"));
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
    cmd.pairs.emplace_back(key, value.get<std::string>());
  }
  if (cmd.pairs.empty())
    return ex->respond(http::Response::error(400, "no keys to set"));
  write(ex, cmd);
}

// PUT and DELETE /key/{key}
void change_key(const std::shared_ptr<Exchange>& ex, fsm::KvCommand::Op op) {
  const std::string& key = ex->path_tail();
  if (key.empty())
    return ex->respond(http::Response::error(400, "empty key"));
  if (!ex->may_write(key))
    return;
  fsm::KvCommand cmd;
  cmd.op = op;
  if (op == fsm::KvCommand::Op::kSet) {
    cmd.pairs.emplace_back(key, ex->request().body);
  } else {
    cmd.keys.push_back(key);
  }
  write(ex, cmd);
}

Backend serve(std::unique_ptr<fsm::KvStore> store) {
  const fsm::KvStore* kv = store.get();
  using fsm::KvCommand;
  std::vector<Route> routes = {
      {"POST", "/key", Access::kPrincipal, set_keys},
      {"GET", "/key/{key}", Access::kPrincipal,
       [kv](std::shared_ptr<Exchange> ex) { get_key(kv, ex); }},
      {"PUT", "/key/{key}", Access::kPrincipal,
       [](std::shared_ptr<Exchange> ex) { change_key(ex, KvCommand::Op::kSet); }},
      {"DELETE", "/key/{key}", Access::kPrincipal,
       [](std::shared_ptr<Exchange> ex) { change_key(ex, KvCommand::Op::kDelete); }},
  };
  return Backend{std::move(store), std::move(routes)};
}

Result<Backend> open_rocksdb(const BackendContext& ctx) {
  fsm::RocksDbOptions options;
  options.max_open_files = static_cast<int>(ctx.max_open_files);
  // Both were checked when the command line was parsed.
  options.flush_entries = parse_count(ctx.flag(kFlushEntriesFlag)).value();
  options.flush_interval = parse_duration(ctx.flag(kFlushIntervalFlag)).value();
  auto rocks = fsm::RocksDbKv::open(ctx.dir, options);
  if (!rocks.ok())
    return Status::io_error("cannot open the rocksdb backend: " + rocks.status().to_string());
  return serve(std::move(rocks).value());
}

}  // namespace

void add_backends(DaemonHooks* hooks) {
  hooks->backends.push_back(
      {"rocksdb", "the key-value store on RocksDB, in <data-dir>/fsm", open_rocksdb});
  hooks->backends.push_back({"memory",
                             "the key-value store in memory, rebuilt from the snapshot and the "
                             "log at start-up",
                             [](const BackendContext&) -> Result<Backend> {
                               return serve(std::make_unique<fsm::MemoryKv>());
                             }});
  hooks->flags.push_back({kFlushEntriesFlag,
                          "rocksdb backend: make applied commands durable after this many (a "
                          "crash applies at most about this many again)",
                          std::to_string(defaults::kFsmFlushEntries),
                          [](const std::string& v) { return parse_count(v).status(); }});
  hooks->flags.push_back({kFlushIntervalFlag, "rocksdb backend: ... or after this long",
                          format_duration(defaults::kFsmFlushInterval),
                          [](const std::string& v) { return parse_duration(v).status(); }});
}

}  // namespace raftnginx::kv
