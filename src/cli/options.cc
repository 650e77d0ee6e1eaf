#include "cli/options.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <charconv>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cluster/member.h"
#include "net/address.h"
#include "util/duration.h"

namespace raftnginx::cli {

using json = nlohmann::json;

Result<uint64_t> parse_size(std::string_view text) {
  uint64_t number = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc() || end == text.data())
    return Status::invalid_argument("'" + std::string(text) + "' is not a size (e.g. 4MiB)");
  const std::string_view unit(end, text.data() + text.size() - end);
  uint64_t scale = 1;
  if (unit.empty() || unit == "B") {
    scale = 1;
  } else if (unit == "K" || unit == "KB" || unit == "KiB") {
    scale = 1ull << 10;
  } else if (unit == "M" || unit == "MB" || unit == "MiB") {
    scale = 1ull << 20;
  } else if (unit == "G" || unit == "GB" || unit == "GiB") {
    scale = 1ull << 30;
  } else {
    return Status::invalid_argument("'" + std::string(text) + "' is not a size (e.g. 4MiB)");
  }
  if (number > (uint64_t{1} << 50) / scale)
    return Status::invalid_argument("'" + std::string(text) + "' is larger than 1PiB");
  return number * scale;
}

std::string format_size(uint64_t bytes) {
  for (const auto& [unit, scale] : {std::pair<const char*, uint64_t>{"GiB", 1ull << 30},
                                    {"MiB", 1ull << 20},
                                    {"KiB", 1ull << 10}}) {
    if (bytes != 0 && bytes % scale == 0)
      return std::to_string(bytes / scale) + unit;
  }
  return std::to_string(bytes);
}

namespace {

// Walks a config.json, checking each known field's type and collecting unknown ones.
class ConfigReader {
 public:
  ConfigReader(std::vector<std::string>* warnings) : warnings_(warnings) {}

  // Calls `read(value, path)` for each known field present; warns about the others.
  Status object(
      const json& doc, const std::string& path,
      const std::map<std::string, std::function<Status(const json&, const std::string&)>>& fields) {
    if (!doc.is_object())
      return Status::invalid_argument(where(path) + " must be an object");
    for (const auto& [key, value] : doc.items()) {
      const std::string field = path.empty() ? key : path + "." + key;
      auto known = fields.find(key);
      if (known == fields.end()) {
        warnings_->push_back("config: unknown field " + field + " (ignored)");
        continue;
      }
      if (Status s = known->second(value, field); !s.ok())
        return s;
    }
    return Status();
  }

  static Status require(const json& doc, const std::string& path,
                        std::initializer_list<const char*> names) {
    for (const char* name : names) {
      if (!doc.contains(name))
        return Status::invalid_argument("config: missing required field " + path + name);
    }
    return Status();
  }

  static std::string where(const std::string& path) { return "config: field " + path; }

 private:
  std::vector<std::string>* warnings_;
};

using FieldReader = std::function<Status(const json&, const std::string&)>;

FieldReader string_into(std::string* out) {
  return [out](const json& v, const std::string& path) {
    if (!v.is_string())
      return Status::invalid_argument(ConfigReader::where(path) + " must be a string");
    *out = v.get<std::string>();
    return Status();
  };
}

template <typename T>
FieldReader number_into(T* out) {
  return [out](const json& v, const std::string& path) {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
      return Status::invalid_argument(ConfigReader::where(path) +
                                      " must be a non-negative integer");
    *out = static_cast<T>(v.get<uint64_t>());
    return Status();
  };
}

FieldReader millis_into(std::chrono::milliseconds* out, int64_t scale) {
  return [out, scale](const json& v, const std::string& path) {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
      return Status::invalid_argument(ConfigReader::where(path) +
                                      " must be a non-negative integer");
    const uint64_t value = v.get<uint64_t>();
    if (value > static_cast<uint64_t>(kMaxDuration.count() / scale))
      return Status::invalid_argument(ConfigReader::where(path) + " is longer than " +
                                      format_duration(kMaxDuration));
    *out = std::chrono::milliseconds(static_cast<int64_t>(value) * scale);
    return Status();
  };
}

FieldReader bool_into(bool* out) {
  return [out](const json& v, const std::string& path) {
    if (!v.is_boolean())
      return Status::invalid_argument(ConfigReader::where(path) + " must be true or false");
    *out = v.get<bool>();
    return Status();
  };
}

FieldReader ignored_with_note(std::vector<std::string>* warnings, std::string note,
                              bool (json::*type_check)() const noexcept, const char* type_name) {
  return [=](const json& v, const std::string& path) {
    if (!(v.*type_check)())
      return Status::invalid_argument(ConfigReader::where(path) + " must be " + type_name);
    warnings->push_back("config: " + path + ": " + note);
    return Status();
  };
}

}  // namespace

Status load_config_file(const std::string& path, DaemonOptions* options,
                        std::vector<std::string>* warnings) {
  std::ifstream in(path);
  if (!in)
    return Status::io_error("cannot read config file " + path);
  std::stringstream text;
  text << in.rdbuf();
  json doc = json::parse(text.str(), nullptr, false);
  if (doc.is_discarded())
    return Status::invalid_argument("config: " + path + " is not valid JSON");
  if (Status s = ConfigReader::require(doc, "", {"nodes"}); !s.ok())
    return s;
  ConfigReader reader(warnings);
  bool single_node = false;
  bool snapshots_enabled = true;
  std::vector<Peer> nodes;
  auto read_nodes = [&](const json& v, const std::string& field) {
    if (!v.is_array() || v.empty())
      return Status::invalid_argument(ConfigReader::where(field) + " must be a non-empty array");
    for (size_t i = 0; i < v.size(); ++i) {
      const std::string at = field + "[" + std::to_string(i) + "]";
      Peer peer;
      if (Status s = reader.object(v[i], at,
                                   {{"id", string_into(&peer.id)},
                                    {"address", string_into(&peer.http_address)},
                                    {"raft_bind", string_into(&peer.raft_address)}});
          !s.ok())
        return s;
      if (Status s = ConfigReader::require(v[i], at + ".", {"id", "address", "raft_bind"}); !s.ok())
        return s;
      nodes.push_back(std::move(peer));
    }
    return Status();
  };
  std::string join;
  Status s = reader.object(
      doc, "",
      {{"cluster_name", string_into(&options->cluster_name)},
       {"nodes", read_nodes},
       {"raft_dir", string_into(&options->data_dir)},
       {"election_timeout_ms", millis_into(&options->election_timeout, 1)},
       {"heartbeat_interval_ms", millis_into(&options->heartbeat_timeout, 1)},
       {"snapshot",
        [&](const json& v, const std::string& field) {
          return reader.object(
              v, field,
              {{"enabled", bool_into(&snapshots_enabled)},
               {"snapshot_interval_sec", millis_into(&options->snapshot_interval, 1000)},
               {"snapshot_threshold", number_into(&options->snapshot_threshold)},
               {"retain_snapshots", number_into(&options->snapshot_retain)}});
        }},
       {"log",
        [&](const json& v, const std::string& field) {
          return reader.object(v, field,
                               {{"log_dir", string_into(&options->log_dir)},
                                {"trailing_logs", number_into(&options->trailing_logs)}});
        }},
       {"transport",
        [&](const json& v, const std::string& field) {
          return reader.object(
              v, field,
              {{"type",
                [](const json& t, const std::string& f) {
                  if (!t.is_string() || t.get<std::string>() != "tcp")
                    return Status::invalid_argument(ConfigReader::where(f) + " must be \"tcp\"");
                  return Status();
                }},
               {"max_pool", ignored_with_note(warnings, "raft-nginx keeps one connection per peer",
                                              &json::is_number_integer, "an integer")},
               {"timeout_sec", ignored_with_note(warnings,
                                                 "raft-nginx derives its I/O deadlines from the "
                                                 "election timeout",
                                                 &json::is_number_integer, "an integer")}});
        }},
       {"bootstrap_expect", number_into(&options->bootstrap_expect)},
       {"single_node", bool_into(&single_node)},
       {"server", [&](const json& v, const std::string& field) {
          return reader.object(v, field, {{"address", string_into(&join)}});
        }}});
  if (!s.ok())
    return s;
  const Peer& self = nodes.front();
  options->id = self.id;
  options->http_bind = self.http_address;
  options->raft_bind = self.raft_address;
  if (!snapshots_enabled) {
    options->snapshot_threshold = UINT64_MAX;
    options->snapshot_interval = std::chrono::milliseconds(0);
  }
  if (options->bootstrap_expect > 0)
    options->peers = nodes;
  // A single node bootstraps itself; otherwise server.address names the member to join.
  if (!single_node && options->bootstrap_expect == 0)
    options->join = join;
  return Status();
}

namespace {

// hraftd names a node after its raft address by default; a member id has no ':' or brackets.
std::string default_id(const std::string& raft_address) {
  std::string id;
  for (const char c : raft_address) {
    if (c == ':')
      id += '-';
    else if (c != '[' && c != ']')
      id += c;
  }
  return id;
}

// Go's flag package takes -name as well as --name; CLI11 wants --name for long options.
std::vector<std::string> go_style_to_long(int argc, char** argv) {
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.size() > 2 && arg[0] == '-' && std::isalpha(static_cast<unsigned char>(arg[1])))
      arg.insert(0, "-");
    out.push_back(std::move(arg));
  }
  std::reverse(out.begin(), out.end());  // CLI11 takes the arguments reversed
  return out;
}

}  // namespace

ParsedOptions parse_options(int argc, char** argv) {
  DaemonOptions flags;
  std::string election = format_duration(flags.election_timeout),
              heartbeat = format_duration(flags.heartbeat_timeout),
              snapshot_interval = format_duration(flags.snapshot_interval),
              write_timeout = format_duration(flags.write_timeout),
              read_timeout = format_duration(flags.http_read_timeout);
  std::string max_body = format_size(flags.max_body), write_policy = "redirect", config_path;
  CLI::App app{
      "raft-nginx: a Raft-replicated key-value store for a cluster of nginx gateways.\n"
      "Flags may be written -name or --name (as hraftd takes them)."};
  app.set_version_flag("--version", std::string(RAFTNGINX_VERSION));
  // Each option given on the command line overrides the config file: `given` copies it over.
  std::vector<std::pair<CLI::Option*, std::function<void(DaemonOptions&)>>> given;
  auto track = [&](CLI::Option* opt, auto member) {
    given.emplace_back(opt, [member, &flags](DaemonOptions& o) { o.*member = flags.*member; });
    return opt;
  };
  track(app.add_option("--id", flags.id,
                       "Node id: letters, digits, '.', '_', '-' (default: the raft address, "
                       "host-port)"),
        &DaemonOptions::id);
  track(app.add_option("--haddr", flags.http_bind, "HTTP bind address")->capture_default_str(),
        &DaemonOptions::http_bind);
  track(app.add_option("--raddr", flags.raft_bind, "Raft bind address")->capture_default_str(),
        &DaemonOptions::raft_bind);
  track(app.add_option("--http-advertise", flags.http_advertise,
                       "HTTP address other nodes and clients use (default: --haddr)"),
        &DaemonOptions::http_advertise);
  track(app.add_option("--raft-advertise", flags.raft_advertise,
                       "Raft address other nodes use (default: --raddr)"),
        &DaemonOptions::raft_advertise);
  track(app.add_option("--join", flags.join, "HTTP address of any cluster member to join"),
        &DaemonOptions::join);
  track(app.add_flag("--learner", flags.learner, "With --join: join as a non-voting learner"),
        &DaemonOptions::learner);
  track(app.add_flag("--inmem", flags.inmem,
                     "Keep everything in memory (tmpfs); nothing survives a restart"),
        &DaemonOptions::inmem);
  app.add_option("--config", config_path, "The Go project's config.json");
  track(app.add_option("data-dir", flags.data_dir, "Directory for the log, snapshots and data"),
        &DaemonOptions::data_dir);
  track(app.add_option("--fsm", flags.fsm, "State machine backend")
            ->check(CLI::IsMember({"memory", "rocksdb"}))
            ->capture_default_str(),
        &DaemonOptions::fsm);
  track(app.add_option("--cluster-name", flags.cluster_name,
                       "Nodes of another cluster name are refused")
            ->capture_default_str(),
        &DaemonOptions::cluster_name);
  auto* election_opt = app.add_option("--election-timeout", election,
                                      "Election timeout, randomized up to twice this")
                           ->capture_default_str();
  auto* heartbeat_opt =
      app.add_option("--heartbeat-timeout", heartbeat, "Leader heartbeat interval")
          ->capture_default_str();
  track(app.add_option("--snapshot-threshold", flags.snapshot_threshold,
                       "Snapshot after this many applied entries")
            ->capture_default_str(),
        &DaemonOptions::snapshot_threshold);
  auto* interval_opt = app.add_option("--snapshot-interval", snapshot_interval,
                                      "Also snapshot this often if anything changed (0: never)")
                           ->capture_default_str();
  track(app.add_option("--snapshot-retain", flags.snapshot_retain, "Snapshots kept on disk")
            ->capture_default_str(),
        &DaemonOptions::snapshot_retain);
  track(app.add_option("--trailing-logs", flags.trailing_logs,
                       "Log entries kept behind a snapshot for lagging followers")
            ->capture_default_str(),
        &DaemonOptions::trailing_logs);
  auto* policy_opt = app.add_option("--write-policy", write_policy,
                                    "A write that reaches a follower: redirect (307 to the "
                                    "leader), forward (relay it), reject (403)")
                         ->check(CLI::IsMember({"redirect", "forward", "reject"}))
                         ->capture_default_str();
  auto* body_opt = app.add_option("--max-body", max_body, "Largest request body (413 above)")
                       ->capture_default_str();
  track(app.add_option("--max-connections", flags.max_connections,
                       "Concurrent HTTP connections (503 above)")
            ->capture_default_str(),
        &DaemonOptions::max_connections);
  auto* read_timeout_opt =
      app.add_option("--http-read-timeout", read_timeout,
                     "A request must arrive whole within this (slower clients are cut off)")
          ->capture_default_str();
  auto* timeout_opt = app.add_option("--write-timeout", write_timeout,
                                     "How long a write waits to commit before 503")
                          ->capture_default_str();
  track(app.add_option("--log-level", flags.log_level, "Log level")
            ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
            ->capture_default_str(),
        &DaemonOptions::log_level);

  track(app.add_option("--nginx-listen", flags.nginx_listen,
                       "Run nginx in front of this node on this address (host:port)"),
        &DaemonOptions::nginx_listen);
  track(app.add_option("--nginx-binary", flags.nginx_binary, "The nginx to run")
            ->capture_default_str(),
        &DaemonOptions::nginx_binary);

  std::vector<std::string> args = go_style_to_long(argc, argv);
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return ParsedOptions{std::nullopt, code == 0 ? 0 : 2};
  }
  auto error = [](const std::string& message) {
    std::cerr << "raft-nginx: " << message << "\n";
    return ParsedOptions{std::nullopt, 2};
  };

  DaemonOptions options;
  if (!config_path.empty()) {
    std::vector<std::string> warnings;
    if (Status s = load_config_file(config_path, &options, &warnings); !s.ok())
      return error(s.message());
    for (const std::string& w : warnings)
      std::cerr << "raft-nginx: warning: " << w << "\n";
  }
  for (const auto& [opt, copy] : given) {
    if (opt->count() > 0)
      copy(options);
  }
  auto duration = [&](CLI::Option* opt, const std::string& text,
                      std::chrono::milliseconds* out) -> Status {
    if (opt->count() == 0)
      return Status();
    auto d = parse_duration(text);
    if (!d.ok())
      return Status::invalid_argument(opt->get_name() + ": " + d.status().message());
    *out = *d;
    return Status();
  };
  for (Status s : {duration(election_opt, election, &options.election_timeout),
                   duration(heartbeat_opt, heartbeat, &options.heartbeat_timeout),
                   duration(interval_opt, snapshot_interval, &options.snapshot_interval),
                   duration(timeout_opt, write_timeout, &options.write_timeout),
                   duration(read_timeout_opt, read_timeout, &options.http_read_timeout)}) {
    if (!s.ok())
      return error(s.message());
  }
  if (body_opt->count() > 0) {
    auto size = parse_size(max_body);
    if (!size.ok())
      return error("--max-body: " + size.status().message());
    options.max_body = *size;
  }
  if (policy_opt->count() > 0)
    options.write_policy = *http::parse_write_policy(write_policy);  // checked by IsMember
  if (options.heartbeat_timeout.count() <= 0 ||
      options.heartbeat_timeout * 2 > options.election_timeout) {
    return error("the heartbeat timeout must be positive and at most half the election timeout");
  }
  if (options.http_advertise.empty())
    options.http_advertise = options.http_bind;
  if (options.raft_advertise.empty())
    options.raft_advertise = options.raft_bind;
  if (options.id.empty())
    options.id = default_id(options.raft_advertise);
  if (Status s = cluster::validate_name(options.id); !s.ok())
    return error("--id: " + s.message());
  for (const auto& [flag, address] :
       {std::pair<const char*, const std::string*>{"--haddr", &options.http_bind},
        {"--raddr", &options.raft_bind}}) {
    if (auto parsed = net::parse_address(*address, net::Port::kZeroAllowed); !parsed.ok())
      return error(std::string(flag) + ": " + parsed.status().message());
  }
  for (const auto& [flag, address] :
       {std::pair<const char*, const std::string*>{"--http-advertise", &options.http_advertise},
        {"--raft-advertise", &options.raft_advertise}}) {
    if (auto parsed = net::parse_address(*address); !parsed.ok())
      return error(std::string(flag) + ": " + parsed.status().message());
  }
  if (!options.join.empty() && !net::valid_address(options.join))
    return error("--join: " + net::parse_address(options.join).status().message());
  if (!options.nginx_listen.empty() && !net::valid_address(options.nginx_listen))
    return error("--nginx-listen: " + net::parse_address(options.nginx_listen).status().message());
  for (const Peer& peer : options.peers) {
    if (Status s = cluster::validate_member({peer.id, peer.raft_address, peer.http_address});
        !s.ok())
      return error("config: nodes: " + s.message());
  }
  if (options.data_dir.empty() && !options.inmem)
    return error("a data directory is required (or -inmem)");
  if (options.learner && options.join.empty())
    return error("--learner needs --join");
  if (options.bootstrap_expect > options.peers.size()) {
    return error("bootstrap_expect is " + std::to_string(options.bootstrap_expect) +
                 " but the config lists " + std::to_string(options.peers.size()) + " nodes");
  }
  return ParsedOptions{std::move(options), 0};
}

}  // namespace raftnginx::cli
