#include "cli/options.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cluster/member.h"
#include "net/address.h"
#include "raftnginx/version.h"
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

// A value for a program's flag, by its check (the program's code: what it throws is a refusal).
Status check_flag_value(const Flag& flag, const std::string& value) {
  if (!flag.check)
    return Status();
  try {  // the program's code
    return flag.check(value);
  } catch (const std::exception& e) {
    return Status::invalid_argument(std::string("the check threw: ") + e.what());
  } catch (...) {
    return Status::invalid_argument("the check threw");
  }
}

// The daemon's flags, each declared once: it writes into `flags` as CLI11 parses, and is
// remembered, so that only the flags given on the command line override the config file.
class FlagSet {
 public:
  explicit FlagSet(CLI::App* app) : app_(app) {}

  template <typename T>
  CLI::Option* value(const std::string& name, T DaemonOptions::*member, const std::string& help) {
    return track(app_->add_option(name, flags_.*member, help), member);
  }
  CLI::Option* flag(const std::string& name, bool DaemonOptions::*member, const std::string& help) {
    return track(app_->add_flag(name, flags_.*member, help), member);
  }
  CLI::Option* duration(const std::string& name, std::chrono::milliseconds DaemonOptions::*member,
                        const std::string& help) {
    return converted<std::chrono::milliseconds>(
        name, member, help, format_duration(flags_.*member),
        [](const std::string& text) { return parse_duration(text); });
  }
  CLI::Option* size(const std::string& name, uint64_t DaemonOptions::*member,
                    const std::string& help) {
    return converted<uint64_t>(name, member, help, format_size(flags_.*member), parse_size);
  }
  CLI::Option* write_policy(const std::string& name, const std::string& help) {
    return converted<http::WritePolicy>(
        name, &DaemonOptions::write_policy, help, "redirect",
        [](const std::string& text) -> Result<http::WritePolicy> {
          if (auto policy = http::parse_write_policy(text))
            return *policy;
          return Status::invalid_argument("'" + text + "' is not redirect, forward or reject");
        });
  }
  // A flag of the program's own (DaemonHooks::flags).
  CLI::Option* program_flag(const Flag& flag) {
    auto* opt = app_->add_option_function<std::string>(
        flag.name,
        [this, flag](const std::string& text) {
          if (Status s = check_flag_value(flag, text); !s.ok())
            throw CLI::ValidationError(flag.name, s.message());
          flags_.program_flags[flag.name] = text;
        },
        flag.help);
    opt->default_str(flag.default_value);
    given_.emplace_back(opt, [this, name = flag.name](DaemonOptions& o) {
      o.program_flags[name] = flags_.program_flags[name];
    });
    return opt;
  }
  // Copies the flags given on the command line into `options`.
  // The values as parsed from the command line (defaults where a flag was not given).
  const DaemonOptions& given() const { return flags_; }
  void override(DaemonOptions* options) const {
    for (const auto& [opt, copy] : given_) {
      if (opt->count() > 0)
        copy(*options);
    }
  }

 private:
  template <typename T>
  CLI::Option* track(CLI::Option* opt, T DaemonOptions::*member) {
    given_.emplace_back(opt, [this, member](DaemonOptions& o) { o.*member = flags_.*member; });
    return opt;
  }
  // An option read as text and converted by `parse` (a Result<T>) as it is parsed.
  template <typename T, typename Parse>
  CLI::Option* converted(const std::string& name, T DaemonOptions::*member, const std::string& help,
                         const std::string& shown_default, Parse parse) {
    auto* opt = app_->add_option_function<std::string>(
        name,
        [this, name, member, parse](const std::string& text) {
          auto value = parse(text);
          if (!value.ok())
            throw CLI::ValidationError(name, value.status().message());
          flags_.*member = value.value();
        },
        help);
    opt->default_str(shown_default);
    return track(opt, member);
  }

  CLI::App* app_;
  DaemonOptions flags_;
  std::vector<std::pair<CLI::Option*, std::function<void(DaemonOptions&)>>> given_;
};

void declare_flags(FlagSet& f, const DaemonHooks& hooks) {
  f.value("--id", &DaemonOptions::id,
          "Node id: letters, digits, '.', '_', '-' (default: the raft address, host-port)");
  f.value("--haddr", &DaemonOptions::http_bind, "HTTP bind address")->capture_default_str();
  f.value("--raddr", &DaemonOptions::raft_bind, "Raft bind address")->capture_default_str();
  f.value("--http-advertise", &DaemonOptions::http_advertise,
          "HTTP address other nodes and clients use (default: --haddr)");
  f.value("--raft-advertise", &DaemonOptions::raft_advertise,
          "Raft address other nodes use (default: --raddr)");
  f.value("--join", &DaemonOptions::join, "HTTP address of any cluster member to join");
  f.flag("--learner", &DaemonOptions::learner, "With --join: join as a non-voting learner");
  f.flag("--inmem", &DaemonOptions::inmem,
         "Keep everything in memory (tmpfs); nothing survives a restart");
  f.value("data-dir", &DaemonOptions::data_dir, "Directory for the log, snapshots and data");
  std::vector<std::string> backends;
  std::string backend_help = "State machine backend:";
  for (const BackendSpec& b : hooks.backends) {
    backends.push_back(b.name);
    backend_help += "\n  " + b.name + ": " + b.help;
  }
  f.value("--fsm", &DaemonOptions::fsm, backend_help)
      ->check(CLI::IsMember(backends))
      ->default_str(backends.front());
  f.value("--cluster-name", &DaemonOptions::cluster_name,
          "Nodes of another cluster name are refused")
      ->capture_default_str();
  f.duration("--election-timeout", &DaemonOptions::election_timeout,
             "Election timeout, randomized up to twice this");
  f.duration("--heartbeat-timeout", &DaemonOptions::heartbeat_timeout, "Leader heartbeat interval");
  f.value("--preferred-leader", &DaemonOptions::preferred_leader,
          "Members that should lead, most wanted first (a comma list of ids, the same on every "
          "node): a leader hands over to the first of them ranked above itself once that one "
          "is up and caught up");
  f.duration("--rtt", &DaemonOptions::rtt,
             "Round trip between the farthest members (a WAN link: 150ms, say): unless given, "
             "the heartbeat becomes the larger of 50ms and it, the election timeout the larger of "
             "500ms and ten times it");
  f.value("--snapshot-threshold", &DaemonOptions::snapshot_threshold,
          "Snapshot after this many applied entries")
      ->capture_default_str();
  f.duration("--snapshot-interval", &DaemonOptions::snapshot_interval,
             "Also snapshot this often if anything changed (0: never)");
  f.value("--snapshot-retain", &DaemonOptions::snapshot_retain, "Snapshots kept on disk")
      ->capture_default_str();
  f.value("--trailing-logs", &DaemonOptions::trailing_logs,
          "Log entries kept behind a snapshot for lagging followers")
      ->capture_default_str();
  f.duration("--verify-interval", &DaemonOptions::verify_interval,
             "How often the leader has every node compare its state hash with its peers' (0: "
             "never; GET /status?verify checks at once)");
  f.duration("--scrub-interval", &DaemonOptions::scrub_interval,
             "How often to re-read every stored file for damage (0: never)");
  f.size("--scrub-rate", &DaemonOptions::scrub_rate, "How fast a scrub reads, per second");
  f.flag("--repair", &DaemonOptions::repair,
         "Set aside what the data directory holds (kept under damaged-<time>/) and rebuild this "
         "node from its peers: it rejoins as a learner, catches up, and gets its old role back. "
         "Needs -join");
  f.write_policy("--write-policy",
                 "A write that reaches a follower: redirect (307 to the leader), forward (relay "
                 "it), reject (403)");
  f.size("--max-body", &DaemonOptions::max_body, "Largest request body (413 above)");
  f.value("--http-max-connections,--max-connections", &DaemonOptions::max_connections,
          "Concurrent HTTP connections; at the limit a client's newest connection closes the "
          "oldest idle one of the client that holds the most, else it gets 503")
      ->capture_default_str();
  f.duration("--http-idle-timeout", &DaemonOptions::http_idle_timeout,
             "A kept-alive HTTP connection idle this long is closed");
  f.duration("--http-read-timeout", &DaemonOptions::http_read_timeout,
             "A request must arrive whole within this (slower clients are cut off)");
  f.duration("--write-timeout", &DaemonOptions::write_timeout,
             "How long a write waits to commit before 504 (it may still commit)");
  f.value("--log-level", &DaemonOptions::log_level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  f.value("--nginx-listen", &DaemonOptions::nginx_listen,
          "Run nginx in front of this node on this address (host:port)");
  f.value("--nginx-binary", &DaemonOptions::nginx_binary, "The nginx to run")
      ->capture_default_str();
  f.duration("--nginx-wait-min", &DaemonOptions::nginx_wait_min,
             "Render the gateways' files (nginx/ keys) once they have been quiet this long");
  f.duration("--nginx-wait-max", &DaemonOptions::nginx_wait_max,
             "... and at the latest this long after their first change");
  f.value("--node-cert", &DaemonOptions::node_cert,
          "Mutual TLS between nodes: this node's certificate (PEM; it must name the node id)");
  f.value("--node-key", &DaemonOptions::node_key, "Mutual TLS between nodes: this node's key");
  f.value("--node-ca", &DaemonOptions::node_ca, "Mutual TLS between nodes: the cluster's CA");
  f.value("--http-cert", &DaemonOptions::http_cert,
          "TLS for clients (HTTP port and nginx): the certificate (PEM)");
  f.value("--http-key", &DaemonOptions::http_key, "TLS for clients: the key");
  f.value("--http-ca", &DaemonOptions::http_ca,
          "TLS for clients: the CA client certificates are checked against");
  f.flag("--http-verify-client", &DaemonOptions::http_verify_client,
         "Clients must present a certificate of --http-ca");
  f.value("--auth", &DaemonOptions::auth_file,
          "Principals and their permissions (JSON; docs/security.md)");
  f.flag("--public-status", &DaemonOptions::public_status,
         "With --auth: /status, /nodes and /metrics answer without credentials");
  f.value("--token-file", &DaemonOptions::token_file,
          "This node's token (the file's first line), presented when it joins a cluster");
  f.flag("--insecure", &DaemonOptions::insecure,
         "Serve addresses other than loopback without node TLS, client TLS and auth");
  for (const Flag& flag : hooks.flags)
    f.program_flag(flag);
}

bool is_loopback(const std::string& address) {
  auto parsed = net::parse_address(address, net::Port::kZeroAllowed);
  if (!parsed.ok())
    return false;
  return net::resolves_to_loopback_only(parsed->host);
}

// TLS and auth are all or nothing per part; and a node that others can reach has all of them,
// or is told --insecure on purpose.
Status check_trust(const DaemonOptions& o) {
  const bool node_tls = !o.node_cert.empty() || !o.node_key.empty() || !o.node_ca.empty();
  if (node_tls && (o.node_cert.empty() || o.node_key.empty() || o.node_ca.empty()))
    return Status::invalid_argument("--node-cert, --node-key and --node-ca go together");
  const bool http_tls = !o.http_cert.empty() || !o.http_key.empty();
  if (http_tls && (o.http_cert.empty() || o.http_key.empty()))
    return Status::invalid_argument("--http-cert and --http-key go together");
  if ((o.http_verify_client || !o.http_ca.empty()) && !http_tls)
    return Status::invalid_argument("--http-ca and --http-verify-client need --http-cert");
  if (o.http_verify_client && o.http_ca.empty())
    return Status::invalid_argument("--http-verify-client needs --http-ca");
  if (o.public_status && o.auth_file.empty())
    return Status::invalid_argument("--public-status goes with --auth");
  const bool exposed = !is_loopback(o.http_bind) || !is_loopback(o.raft_bind) ||
                       (!o.nginx_listen.empty() && !is_loopback(o.nginx_listen));
  if (exposed && !(node_tls && http_tls && !o.auth_file.empty()) && !o.insecure) {
    return Status::invalid_argument(
        "this node listens beyond loopback, so it needs node TLS (--node-cert/--node-key/"
        "--node-ca), client TLS (--http-cert/--http-key) and --auth; `raft-nginx certs` makes "
        "the certificates (docs/security.md). --insecure serves without them");
  }
  return Status();
}

// Fills in what defaults to other options, and checks what no single flag can.
Status complete_and_check(DaemonOptions* o) {
  o->preferred_leaders.clear();
  for (size_t at = 0; !o->preferred_leader.empty() && at <= o->preferred_leader.size();) {
    const size_t comma = std::min(o->preferred_leader.find(',', at), o->preferred_leader.size());
    std::string name = o->preferred_leader.substr(at, comma - at);
    if (Status s = cluster::validate_name(name); !s.ok())
      return Status::invalid_argument("--preferred-leader: " + s.message());
    o->preferred_leaders.push_back(std::move(name));
    at = comma + 1;
  }
  if (o->rtt > defaults::kMaxRtt)
    return Status::invalid_argument("--rtt must be at most " + format_duration(defaults::kMaxRtt));
  if (o->heartbeat_timeout.count() <= 0 || o->heartbeat_timeout * 2 > o->election_timeout)
    return Status::invalid_argument(
        "the heartbeat timeout (" + format_duration(o->heartbeat_timeout) +
        ") must be positive and at most half the election timeout (" +
        format_duration(o->election_timeout) + ")" +
        (o->rtt.count() > 0 ? "; --rtt sets both where nothing else does" : ""));
  if (o->nginx_wait_min > o->nginx_wait_max)
    return Status::invalid_argument("--nginx-wait-min must be at most --nginx-wait-max");
  if (o->http_advertise.empty())
    o->http_advertise = o->http_bind;
  if (o->raft_advertise.empty())
    o->raft_advertise = o->raft_bind;
  if (o->id.empty())
    o->id = default_id(o->raft_advertise);
  if (Status s = cluster::validate_name(o->id); !s.ok())
    return Status::invalid_argument("--id: " + s.message());
  const std::pair<const char*, const std::string*> binds[] = {{"--haddr", &o->http_bind},
                                                              {"--raddr", &o->raft_bind}};
  for (const auto& [flag, address] : binds) {
    if (auto parsed = net::parse_address(*address, net::Port::kZeroAllowed); !parsed.ok())
      return Status::invalid_argument(std::string(flag) + ": " + parsed.status().message());
  }
  const std::pair<const char*, const std::string*> reachable[] = {
      {"--http-advertise", &o->http_advertise},
      {"--raft-advertise", &o->raft_advertise},
      {"--join", &o->join},
      {"--nginx-listen", &o->nginx_listen}};
  for (const auto& [flag, address] : reachable) {
    if (address->empty())
      continue;
    if (auto parsed = net::parse_address(*address); !parsed.ok())
      return Status::invalid_argument(std::string(flag) + ": " + parsed.status().message());
  }
  for (const Peer& peer : o->peers) {
    if (Status s = cluster::validate_member({peer.id, peer.raft_address, peer.http_address});
        !s.ok())
      return Status::invalid_argument("config: nodes: " + s.message());
  }
  if (o->data_dir.empty() && !o->inmem)
    return Status::invalid_argument("a data directory is required (or -inmem)");
  if (o->learner && o->join.empty())
    return Status::invalid_argument("--learner needs --join");
  if (o->repair && (o->join.empty() || o->inmem))
    return Status::invalid_argument(
        "--repair needs --join (a member to rebuild from) and a data directory");
  if (!net::valid_dns_name(o->cluster_name))
    return Status::invalid_argument(
        "--cluster-name must be a DNS name (letters, digits, '-', '.')");
  if (Status s = check_trust(*o); !s.ok())
    return s;
  if (o->bootstrap_expect > o->peers.size()) {
    return Status::invalid_argument("bootstrap_expect is " + std::to_string(o->bootstrap_expect) +
                                    " but the config lists " + std::to_string(o->peers.size()) +
                                    " nodes");
  }
  return Status();
}

}  // namespace

std::string version_line(const DaemonHooks& hooks) {
  const std::string ours =
      "raft-nginx " RAFTNGINX_VERSION " (public API " + std::to_string(RAFTNGINX_API_VERSION) + ")";
  if (hooks.program == "raft-nginx")
    return ours;
  return hooks.program + (hooks.version.empty() ? "" : " " + hooks.version) + ", built on " + ours;
}

Status check_hooks(const DaemonHooks& hooks) {
  auto plain = [](std::string_view name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    });
  };
  if (!plain(hooks.program))
    return Status::invalid_argument("program name '" + hooks.program + "': a-z, 0-9 and '-'");
  if (hooks.backends.empty())
    return Status::invalid_argument("no backend is registered");
  std::set<std::string> names;
  for (const BackendSpec& b : hooks.backends) {
    if (!plain(b.name) || !b.open)
      return Status::invalid_argument("backend '" + b.name +
                                      "': a name of a-z, 0-9 and '-', and an open function");
    if (!names.insert(b.name).second)
      return Status::invalid_argument("backend " + b.name + " is registered twice");
  }
  names.clear();
  for (const Flag& f : hooks.flags) {
    if (!f.name.starts_with("--") || !plain(std::string_view(f.name).substr(2)))
      return Status::invalid_argument("flag '" + f.name + "': two dashes, then a-z, 0-9 and '-'");
    if (!names.insert(f.name).second)
      return Status::invalid_argument("flag " + f.name + " is registered twice");
    if (Status s = check_flag_value(f, f.default_value); !s.ok())
      return Status::invalid_argument("flag " + f.name + ": its default '" + f.default_value +
                                      "' is refused: " + s.message());
  }
  return Status();
}

ParsedOptions parse_options(int argc, char** argv, const DaemonHooks& hooks) {
  const std::string about = hooks.description.empty()
                                ? "raft-nginx: a Raft-replicated key-value store for a cluster "
                                  "of nginx gateways."
                                : hooks.description;
  CLI::App app{about + "\nFlags may be written -name or --name (as hraftd takes them).",
               hooks.program};
  app.set_version_flag("--version", version_line(hooks));
  FlagSet flags(&app);
  std::string config_path;
  try {
    app.add_option("--config", config_path, "The Go project's config.json");
    declare_flags(flags, hooks);
  } catch (const CLI::Error& e) {  // a program's flag that is also one of the daemon's
    std::cerr << hooks.program << ": " << e.what() << "\n";
    return ParsedOptions{std::nullopt, 2};
  }
  std::vector<std::string> args = go_style_to_long(argc, argv);
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return ParsedOptions{std::nullopt, code == 0 ? 0 : 2};
  }
  auto error = [&hooks](const std::string& message) {
    std::cerr << hooks.program << ": " << message << "\n";
    return ParsedOptions{std::nullopt, 2};
  };
  DaemonOptions options;
  options.fsm = hooks.backends.front().name;
  for (const Flag& f : hooks.flags)
    options.program_flags[f.name] = f.default_value;
  // --rtt sets the timeouts' defaults: the config file and the flags given override them.
  if (const std::chrono::milliseconds rtt = flags.given().rtt; rtt.count() > 0) {
    options.heartbeat_timeout = std::max(defaults::kHeartbeatTimeout, rtt);
    options.election_timeout =
        std::max(defaults::kElectionTimeout, defaults::kElectionRoundTrips * rtt);
  }
  if (!config_path.empty()) {
    std::vector<std::string> warnings;
    if (Status s = load_config_file(config_path, &options, &warnings); !s.ok())
      return error(s.message());
    for (const std::string& w : warnings)
      std::cerr << hooks.program << ": warning: " << w << "\n";
  }
  flags.override(&options);
  const bool has_memory = std::any_of(hooks.backends.begin(), hooks.backends.end(),
                                      [](const BackendSpec& b) { return b.name == "memory"; });
  if (options.inmem && has_memory)
    options.fsm = "memory";
  if (Status s = complete_and_check(&options); !s.ok())
    return error(s.message());
  return ParsedOptions{std::move(options), 0};
}

}  // namespace raftnginx::cli
