#include "kv/kv_backends.h"

#include "fsm/memory_kv.h"
#include "fsm/rocksdb_kv.h"
#include "kv/gateway_files.h"
#include "kv/kv_routes.h"
#include "kv/watch_hub.h"
#include "util/duration.h"

namespace raftnginx::kv {
namespace {

constexpr const char* kFlushEntriesFlag = "--fsm-flush-entries";
constexpr const char* kFlushIntervalFlag = "--fsm-flush-interval";
constexpr const char* kMaxWatchersFlag = "--kv-max-watchers";
constexpr const char* kProgressFlag = "--kv-watch-progress";
constexpr const char* kMaxWaitFlag = "--kv-max-wait";

// The store, its routes, and the hub that follows its changes.
Backend serve(std::unique_ptr<fsm::KvStore> store, const BackendContext& ctx) {
  WatchHubOptions options;
  // Both were checked when the command line was parsed.
  options.max_watchers = parse_count(kMaxWatchersFlag, ctx.flag(kMaxWatchersFlag)).value();
  options.progress_interval = parse_duration(ctx.flag(kProgressFlag)).value();
  std::shared_ptr<WatchHub> hub = WatchHub::start(store.get(), options);
  store->set_observer(hub.get());
  auto gateway = std::make_shared<GatewayWrites>(store.get(), ctx.gateway_check);
  std::vector<Route> routes =
      kv_routes(store.get(), hub, parse_duration(ctx.flag(kMaxWaitFlag)).value(), gateway);
  auto files = gateway_files_source(store.get(), hub);
  // Before the node stops: no blocking query, watch or checked write is left waiting on it.
  auto attach = [hub, gateway](Replica* replica) {
    if (replica == nullptr)
      gateway->stop();
    hub->attach(replica);
  };
  return Backend{std::move(store), std::move(routes), std::move(attach), std::move(files)};
}

Result<Backend> open_rocksdb(const BackendContext& ctx) {
  fsm::RocksDbOptions options;
  options.max_open_files = static_cast<int>(ctx.max_open_files);
  // Both were checked when the command line was parsed.
  options.flush_entries = parse_count(kFlushEntriesFlag, ctx.flag(kFlushEntriesFlag)).value();
  options.flush_interval = parse_duration(ctx.flag(kFlushIntervalFlag)).value();
  auto rocks = fsm::RocksDbKv::open(ctx.dir, options);
  if (!rocks.ok())
    return Status::io_error("cannot open the rocksdb backend: " + rocks.status().to_string());
  return serve(std::move(rocks).value(), ctx);
}

}  // namespace

void add_backends(DaemonHooks* hooks) {
  hooks->backends.push_back(
      {"rocksdb", "the key-value store on RocksDB, in <data-dir>/fsm", open_rocksdb});
  hooks->backends.push_back({"memory",
                             "the key-value store in memory, rebuilt from the snapshot and the "
                             "log at start-up",
                             [](const BackendContext& ctx) -> Result<Backend> {
                               return serve(std::make_unique<fsm::MemoryKv>(), ctx);
                             }});
  hooks->flags.push_back({kFlushEntriesFlag,
                          "rocksdb backend: make applied commands durable after this many (a "
                          "crash applies at most about this many again)",
                          std::to_string(defaults::kFsmFlushEntries), [](const std::string& v) {
                            return parse_count("the value", v).status();
                          }});
  hooks->flags.push_back({kFlushIntervalFlag, "rocksdb backend: ... or after this long",
                          format_duration(defaults::kFsmFlushInterval),
                          [](const std::string& v) { return parse_duration(v).status(); }});
  hooks->flags.push_back(
      {kMaxWaitFlag,
       "the longest a blocking query waits (at most the default: the gateway's nginx waits "
       "30 s more)",
       format_duration(defaults::kMaxBlockingWait), [](const std::string& v) -> Status {
         return parse_duration(v, defaults::kMaxBlockingWait).status();
       }});
  hooks->flags.push_back(
      {kMaxWatchersFlag, "the most watches and blocking queries this node serves at once",
       std::to_string(defaults::kMaxWatchers),
       [](const std::string& v) { return parse_count("the value", v).status(); }});
  hooks->flags.push_back(
      {kProgressFlag, "how often an idle watch hears the index this node has reached",
       format_duration(defaults::kWatchProgressInterval), [](const std::string& v) -> Status {
         auto d = parse_duration(v, defaults::kMaxWatchProgressInterval);
         if (d.ok() && d->count() <= 0)
           return Status::invalid_argument("must be longer than 0");
         return d.status();
       }});
}

}  // namespace raftnginx::kv
