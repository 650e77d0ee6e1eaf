#include "cli/client_command.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "http/client.h"
#include "net/tls.h"
#include "util/duration.h"

namespace raftnginx::cli {
namespace {

using json = nlohmann::json;

enum Exit : int {
  kDone = 0,
  kRefused = 1,
  kUsage = 2,
  kNotFound = 3,
  kCompareFailed = 4,
  kUnreachable = 5,
  kOutcomeUnknown = 6,
};

constexpr const char* kExitCodes =
    "Exit codes: 0 done; 1 refused (an HTTP error); 2 bad usage; 3 no such key or member; "
    "4 a compare failed; 5 no endpoint could serve it; 6 outcome unknown (it may still apply).";

// What every verb needs to reach the cluster.
struct Connection {
  std::vector<std::string> endpoints{"127.0.0.1:11000"};
  std::string token;
  std::string cacert;
  std::string cert;
  std::string key;
  std::string cluster_name = "raft-nginx";
  std::string output = "table";
  std::string timeout = "10s";
};

void add_connection_options(CLI::App& app, Connection& c) {
  app.fallthrough();  // these may also follow the verb
  app.add_option("--endpoints", c.endpoints,
                 "Members' HTTP addresses (host:port), comma separated, tried in order")
      ->delimiter(',')
      ->envname("RAFTNGINX_ENDPOINTS")
      ->capture_default_str();
  app.add_option("--token", c.token, "Bearer token of a principal (--auth)")
      ->envname("RAFTNGINX_TOKEN");
  app.add_option("--cacert", c.cacert, "CA the members' certificates chain to: speak HTTPS")
      ->envname("RAFTNGINX_CACERT");
  app.add_option("--cert", c.cert, "Client certificate to present (--http-verify-client)")
      ->envname("RAFTNGINX_CERT");
  app.add_option("--key", c.key, "Its private key")->envname("RAFTNGINX_KEY");
  app.add_option("--cluster-name", c.cluster_name, "The name members' certificates carry")
      ->capture_default_str();
  app.add_option("-o,--output", c.output, "table (for people) or json (for scripts)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app.add_option("--timeout", c.timeout, "How long each request may take")->capture_default_str();
}

std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~' || ch == '/') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return out;
}

std::string cell(const json& value) {
  if (value.is_string())
    return value.get<std::string>();
  return value.is_null() ? "" : value.dump();
}

std::string random_request_id() {
  std::random_device device;
  std::uniform_int_distribution<int> nibble(0, 15);
  std::string id = "cli-";
  for (int i = 0; i < 24; ++i)
    id += "0123456789abcdef"[nibble(device)];
  return id;
}

// Sends requests the way the header describes: endpoints in order, redirects followed.
class Caller {
 public:
  static Result<std::unique_ptr<Caller>> open(const Connection& c) {
    auto timeout = parse_duration(c.timeout, std::chrono::hours(1));
    if (!timeout.ok())
      return Status::invalid_argument("--timeout: " + timeout.status().message());
    if (c.cert.empty() != c.key.empty())
      return Status::invalid_argument("--cert and --key go together");
    if (!c.cert.empty() && c.cacert.empty())
      return Status::invalid_argument("--cert needs --cacert (HTTPS)");
    http::ClientOptions options;
    if (!c.cacert.empty()) {
      auto tls = net::TlsContext::load(net::TlsFiles{c.cert, c.key, c.cacert},
                                       net::TlsContext::PeerCertificate::kRequired);
      if (!tls.ok())
        return tls.status();
      options.tls = std::move(tls).value();
      options.server_name = c.cluster_name;
    }
    std::vector<std::string> endpoints;
    for (std::string e : c.endpoints) {
      for (std::string_view scheme : {"http://", "https://"}) {
        if (e.starts_with(scheme))
          e.erase(0, scheme.size());
      }
      while (e.ends_with('/'))
        e.pop_back();
      if (e.empty() || e.find_first_of("/?# ") != std::string::npos)
        return Status::invalid_argument("--endpoints: not host:port: " + e);
      endpoints.push_back(e);
    }
    if (endpoints.empty())
      return Status::invalid_argument("--endpoints: none given");
    return std::unique_ptr<Caller>(new Caller(std::move(options), std::move(endpoints),
                                              c.token.empty() ? "" : "Bearer " + c.token,
                                              *timeout));
  }

  // Unavailable, naming each endpoint's failure, when none could serve the request.
  Result<http::Response> call(const std::string& method, const std::string& target,
                              const std::string& body = "") {
    const bool write = method != "GET";
    std::string failures;
    for (const std::string& endpoint : endpoints_) {
      std::string address = endpoint;
      for (int hop = 0; hop <= kMaxRedirects; ++hop) {
        http::Request request;
        request.method = method;
        request.target = target;
        request.body = body;
        if (!body.empty())
          request.headers.emplace_back("Content-Type", "application/json");
        if (!authorization_.empty())
          request.headers.emplace_back("Authorization", authorization_);
        if (write)
          request.headers.emplace_back("Idempotency-Key", request_id_);
        auto answer = client_.fetch(address, std::move(request), timeout_);
        if (!answer.ok()) {
          failures += "\n  " + address + ": " + answer.status().message();
          break;
        }
        if (answer->status == 307 && !answer->header("X-Raft-Leader").empty()) {
          address = std::string(answer->header("X-Raft-Leader"));
          continue;
        }
        if (answer->status == 503) {
          failures += "\n  " + address + ": " + error_text(*answer);
          break;
        }
        return answer;
      }
    }
    return Status::unavailable("no endpoint could serve " + method + " " + target + ":" + failures);
  }

  // Follows a watch (see kv watch) across endpoints; returns the exit code.
  int watch(const std::string& prefix, uint64_t from, size_t count, bool raw);

  static std::string error_text(const http::Response& r) {
    const json body = json::parse(r.body, nullptr, false);
    if (body.is_object() && body.contains("error") && body["error"].is_string())
      return "HTTP " + std::to_string(r.status) + ": " + body["error"].get<std::string>();
    return "HTTP " + std::to_string(r.status);
  }

 private:
  static constexpr int kMaxRedirects = 3;
  // A member sends progress every few seconds (--kv-watch-progress, 5 s by default): a watch
  // quiet for longer than this has lost its member.
  static constexpr std::chrono::milliseconds kWatchIdle{30000};
  static constexpr size_t kMaxLine = 8 << 20;  // a whole index, values included
  static constexpr size_t kMaxErrorBody = 64 << 10;

  Caller(http::ClientOptions options, std::vector<std::string> endpoints, std::string authorization,
         std::chrono::milliseconds timeout)
      : client_(std::move(options)),
        endpoints_(std::move(endpoints)),
        authorization_(std::move(authorization)),
        timeout_(timeout),
        request_id_(random_request_id()) {}

  http::Client client_;
  const std::vector<std::string> endpoints_;
  const std::string authorization_;
  const std::chrono::milliseconds timeout_;
  const std::string request_id_;  // one per run: a retry on another endpoint applies once
};

int failed(const http::Response& r);

// Prints one event: a line of its own in table form, "INDEX TYPE KEY [VALUE]".
void print_event(const json& event) {
  std::string line = cell(event.value("index", json())) + " " + cell(event.value("type", json())) +
                     " " + cell(event.value("key", json()));
  if (event.contains("value"))
    line += " " + cell(event["value"]);
  std::cout << line << "\n" << std::flush;
}

int Caller::watch(const std::string& prefix, uint64_t from, size_t count, bool raw) {
  uint64_t next = from;  // 0: from now on, until the first answer says where now is
  size_t shown = 0;
  size_t failures_in_a_row = 0;
  std::string failures;
  for (size_t turn = 0;; ++turn) {
    const std::string& address = endpoints_[turn % endpoints_.size()];
    http::Request request;
    request.method = "GET";
    request.target = "/watch?prefix=" + percent_encode(prefix) +
                     (next > 0 ? "&from=" + std::to_string(next) : "");
    if (!authorization_.empty())
      request.headers.emplace_back("Authorization", authorization_);
    int status = 0;
    std::string pending;  // a line not yet whole, or an error's body
    bool done = false;
    bool delivered = false;
    http::Client::Sink sink{
        [&](const http::Response& head) {
          status = head.status;
          if (status == 200 && next == 0 && !head.header("X-Raft-Index").empty())
            next = std::stoull(std::string(head.header("X-Raft-Index"))) + 1;
          return true;
        },
        [&](std::string_view piece) {
          pending += piece;
          if (status != 200)
            return pending.size() < kMaxErrorBody;
          delivered = true;
          size_t start = 0;
          for (size_t end; (end = pending.find('\n', start)) != std::string::npos;
               start = end + 1) {
            const std::string line = pending.substr(start, end - start);
            const json message = json::parse(line, nullptr, false);
            if (!message.is_object())
              continue;
            if (message.contains("progress")) {
              next = std::max<uint64_t>(next, message["progress"].get<uint64_t>() + 1);
              if (raw)
                std::cout << line << "\n" << std::flush;
            } else if (message.contains("error")) {
              // Too slow for the history: on from where the member says, on a new stream.
              std::cerr << "raft-nginx: the watch fell behind (" << cell(message["error"])
                        << "); resuming\n";
              next = message.value("resume_from", next);
              return false;
            } else {
              next = message.value("index", next) + 1;
              if (raw) {
                std::cout << line << "\n" << std::flush;
              } else {
                print_event(message);
              }
              if (count > 0 && ++shown >= count) {
                done = true;
                return false;
              }
            }
          }
          pending.erase(0, start);
          return pending.size() < kMaxLine;
        }};
    Status s = client_.stream(address, std::move(request), kWatchIdle, sink);
    if (done)
      return kDone;
    if (status != 0 && status != 200 && status != 503) {
      http::Response answer;
      answer.status = status;
      answer.body = pending;
      return failed(answer);
    }
    if (delivered) {
      failures_in_a_row = 0;
      failures.clear();
    }
    failures += "\n  " + address + ": " +
                (s.ok() ? (status == 503 ? "HTTP 503" : "the stream ended") : s.message());
    if (++failures_in_a_row >= 2 * endpoints_.size()) {
      std::cerr << "raft-nginx: no endpoint could serve the watch:" << failures << "\n";
      return kUnreachable;
    }
  }
}

// The exit code for an answer that is not a success, after saying why on stderr.
int failed(const http::Response& r) {
  std::cerr << "raft-nginx: " << Caller::error_text(r) << "\n";
  switch (r.status) {
    case 404:
      return kNotFound;
    case 412:
      return kCompareFailed;
    case 504:
      return kOutcomeUnknown;
    default:
      return kRefused;
  }
}

// One verb: how to make its request, and how to show a successful answer.
struct Verb {
  std::string method;
  std::string target;
  std::string body;
  std::function<int(const http::Response&, const Connection&)> show;
};

int show_json(const http::Response& r, const Connection&) {
  const json body = json::parse(r.body, nullptr, false);
  std::cout << (body.is_discarded() ? r.body : body.dump(2)) << "\n";
  return kDone;
}

// Prints rows under a header, each column as wide as its widest cell.
void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) {
    width[i] = header[i].size();
    for (const auto& row : rows)
      width[i] = std::max(width[i], row[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) {
      out += cells[i];
      if (i + 1 < cells.size())
        out += std::string(width[i] - cells[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& row : rows)
    line(row);
}

int run(const Connection& c, const Verb& verb) {
  auto caller = Caller::open(c);
  if (!caller.ok()) {
    std::cerr << "raft-nginx: " << caller.status().message() << "\n";
    return kUsage;
  }
  auto answer = (*caller)->call(verb.method, verb.target, verb.body);
  if (!answer.ok()) {
    std::cerr << "raft-nginx: " << answer.status().message() << "\n";
    return kUnreachable;
  }
  if (answer->status >= 300)
    return failed(*answer);
  return verb.show(*answer, c);
}

// Adds ?name=value pairs, skipping empty values.
std::string with_query(std::string target,
                       const std::vector<std::pair<std::string, std::string>>& params) {
  char sep = target.find('?') == std::string::npos ? '?' : '&';
  for (const auto& [name, value] : params) {
    if (value.empty())
      continue;
    target += sep + name + "=" + percent_encode(value);
    sep = '&';
  }
  return target;
}

int show_written(const http::Response& r, const Connection& c) {
  if (c.output == "json") {
    std::cout << json{{"index", json::parse(r.header("X-Raft-Index"), nullptr, false)}}.dump()
              << "\n";
  } else {
    std::cout << "OK (index " << r.header("X-Raft-Index") << ")\n";
  }
  return kDone;
}

// -1 once the command line parsed; otherwise the exit code (0 for --help, kUsage for a mistake,
// which CLI11 has explained on stderr).
int parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return -1;
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kDone : kUsage;
  }
}

}  // namespace

int run_kv_command(int argc, char** argv) {
  CLI::App app{"raft-nginx kv: read and write the key-value store through any member.\n" +
               std::string(kExitCodes)};
  app.name("raft-nginx kv");
  app.require_subcommand(1);
  Connection c;
  add_connection_options(app, c);
  Verb verb;
  std::string key, value, level, ttl, cas, prefix, after, file = "-";
  size_t limit = 0;
  bool keys_only = false;

  auto* get = app.add_subcommand("get", "Print a key's value (json: with its revisions)");
  get->add_option("key", key, "The key")->required();
  get->add_option("--level", level, "stale, default, linearizable or auto");
  get->callback([&] {
    verb = {"GET", with_query("/key/" + percent_encode(key), {{"level", level}}), "",
            [&key](const http::Response& r, const Connection& c) {
              const json body = json::parse(r.body, nullptr, false);
              if (!body.is_object() || !body.contains(key))
                return show_json(r, c);
              if (c.output == "table") {
                std::cout << cell(body[key]) << "\n";
                return int{kDone};
              }
              json out{{"key", key}, {"value", body[key]}};
              for (const auto& [field, header] : {std::pair{"mod_index", "X-Raft-Mod-Index"},
                                                  {"create_index", "X-Raft-Create-Index"},
                                                  {"version", "X-Raft-Version"},
                                                  {"index", "X-Raft-Index"}}) {
                if (!r.header(header).empty())
                  out[field] = json::parse(r.header(header), nullptr, false);
              }
              std::cout << out.dump() << "\n";
              return int{kDone};
            }};
  });

  auto* put = app.add_subcommand("put", "Set a key");
  put->add_option("key", key, "The key")->required();
  put->add_option("value", value, "The value")->required();
  put->add_option("--ttl", ttl, "Delete the key this long after the write (30s, 5m)");
  put->add_option("--cas", cas, "Only if the key's mod_index is this (0: only if absent)");
  put->callback([&] {
    verb = {"PUT", with_query("/key/" + percent_encode(key), {{"ttl", ttl}, {"cas", cas}}), value,
            show_written};
  });

  auto* del = app.add_subcommand("del", "Delete a key");
  del->add_option("key", key, "The key")->required();
  del->add_option("--cas", cas, "Only if the key's mod_index is this");
  del->callback([&] {
    verb = {"DELETE", with_query("/key/" + percent_encode(key), {{"cas", cas}}), "", show_written};
  });

  auto* list = app.add_subcommand("list", "List the keys under a prefix, at one index");
  list->add_option("prefix", prefix, "The prefix (all keys if none)");
  list->add_flag("--keys", keys_only, "Names only");
  list->add_option("--limit", limit, "At most this many (the member's limit applies)");
  list->add_option("--after", after, "Only keys after this one (the next page)");
  list->add_option("--level", level, "stale, default, linearizable or auto");
  list->callback([&] {
    verb = {
        "GET",
        with_query(
            "/key?prefix=" + percent_encode(prefix) + "&detailed",
            {{"limit", limit ? std::to_string(limit) : ""}, {"after", after}, {"level", level}}),
        "", [&keys_only](const http::Response& r, const Connection& c) {
          const json rows = json::parse(r.body, nullptr, false);
          if (c.output == "json" || !rows.is_array())
            return show_json(r, c);
          if (keys_only) {
            for (const json& row : rows)
              std::cout << cell(row.value("key", json())) << "\n";
          } else {
            std::vector<std::vector<std::string>> table;
            for (const json& row : rows) {
              table.push_back({cell(row.value("key", json())), cell(row.value("value", json())),
                               cell(row.value("mod_index", json())),
                               cell(row.value("version", json()))});
            }
            print_table({"KEY", "VALUE", "MOD_INDEX", "VERSION"}, table);
          }
          if (!r.header("X-Raft-Truncated").empty() && !rows.empty())
            std::cerr << "(more: --after " << cell(rows.back().value("key", json())) << ")\n";
          return int{kDone};
        }};
  });

  uint64_t from = 0;
  size_t count = 0;
  auto* watch = app.add_subcommand(
      "watch",
      "Print each change under a prefix as it commits (table: INDEX TYPE KEY VALUE; json: the "
      "stream's own lines), moving to another endpoint when one goes away, without missing or "
      "repeating a change");
  watch->add_option("prefix", prefix, "The prefix (every key if none)");
  watch->add_option("--from", from, "The first index to show (default: changes from now on)");
  watch->add_option("--count", count, "Stop after this many changes (default: never)");
  bool watching = false;
  watch->callback([&] { watching = true; });

  auto* txn = app.add_subcommand("txn", "Send a transaction (POST /txn's JSON body)");
  txn->add_option("file", file, "File with the body, - for standard input")->capture_default_str();
  txn->callback([&] {
    std::ifstream in_file;
    std::istream* in = &std::cin;
    if (file != "-") {
      in_file.open(file);
      if (!in_file)
        throw CLI::ValidationError("txn", "cannot read " + file);
      in = &in_file;
    }
    std::string body((std::istreambuf_iterator<char>(*in)), std::istreambuf_iterator<char>());
    verb = {"POST", "/txn", body, [](const http::Response& r, const Connection& c) {
              show_json(r, c);
              const json body = json::parse(r.body, nullptr, false);
              const bool failed_compare =
                  body.is_object() && body.contains("succeeded") && body["succeeded"] == false;
              return int{failed_compare ? kCompareFailed : kDone};
            }};
  });

  if (int code = parse(app, argc, argv); code >= 0)
    return code;
  if (watching) {
    auto caller = Caller::open(c);
    if (!caller.ok()) {
      std::cerr << "raft-nginx: " << caller.status().message() << "\n";
      return kUsage;
    }
    return (*caller)->watch(prefix, from, count, c.output == "json");
  }
  return run(c, verb);
}

int run_cluster_command(int argc, char** argv) {
  CLI::App app{"raft-nginx cluster: the members and their leader, through any member.\n" +
               std::string(kExitCodes)};
  app.name("raft-nginx cluster");
  app.require_subcommand(1);
  Connection c;
  add_connection_options(app, c);
  Verb verb;
  std::string id, raft_addr, http_addr;
  bool learner = false, replace = false;

  app.add_subcommand("status", "The answering member's view: role, term, leader, indexes")
      ->callback([&] {
        verb = {"GET", "/status", "", [](const http::Response& r, const Connection& c) {
                  const json st = json::parse(r.body, nullptr, false);
                  if (c.output == "json" || !st.is_object())
                    return show_json(r, c);
                  std::vector<std::vector<std::string>> rows;
                  for (const auto& [field, value] : st.items()) {
                    if (field == "leader" && value.is_object()) {
                      rows.push_back({field, cell(value.value("id", json()))});
                    } else if (!value.is_structured()) {
                      rows.push_back({field, cell(value)});
                    }
                  }
                  print_table({"FIELD", "VALUE"}, rows);
                  return int{kDone};
                }};
      });

  app.add_subcommand("members", "Every member, with its addresses and whether it answers")
      ->callback([&] {
        verb = {"GET", "/nodes", "", [](const http::Response& r, const Connection& c) {
                  const json nodes = json::parse(r.body, nullptr, false);
                  if (c.output == "json" || !nodes.is_array())
                    return show_json(r, c);
                  std::vector<std::vector<std::string>> rows;
                  for (const json& n : nodes) {
                    rows.push_back(
                        {cell(n.value("id", json())), n.value("voter", false) ? "voter" : "learner",
                         cell(n.value("http_addr", json())), cell(n.value("raft_addr", json())),
                         n.value("reachable", false) ? "yes" : "no"});
                  }
                  print_table({"ID", "ROLE", "HTTP", "RAFT", "REACHABLE"}, rows);
                  return int{kDone};
                }};
      });

  auto* join = app.add_subcommand("join", "Add a member (or move one, with --replace)");
  join->add_option("id", id, "The new member's id")->required();
  join->add_option("--raft-addr", raft_addr, "Its raft address (host:port)")->required();
  join->add_option("--http-addr", http_addr, "Its HTTP address (host:port)")->required();
  join->add_flag("--learner", learner, "As a learner: replicates and serves reads, never votes");
  join->add_flag("--replace", replace, "Move a member that has this id to the new addresses");
  join->callback([&] {
    json body{{"id", id}, {"addr", raft_addr}, {"http_addr", http_addr}, {"voter", !learner}};
    if (replace)
      body["replace"] = true;
    verb = {"POST", "/join", body.dump(), show_json};
  });

  auto* remove = app.add_subcommand("remove", "Remove a member");
  remove->add_option("id", id, "The member's id")->required();
  remove->callback([&] { verb = {"POST", "/remove", json{{"id", id}}.dump(), show_json}; });

  auto* promote = app.add_subcommand("promote", "Make a learner a voter");
  promote->add_option("id", id, "The learner's id")->required();
  promote->callback([&] { verb = {"POST", "/promote", json{{"id", id}}.dump(), show_json}; });

  auto* transfer =
      app.add_subcommand("transfer", "Hand leadership to a voter (the most up-to-date if none)");
  transfer->add_option("id", id, "The voter's id");
  transfer->callback([&] {
    verb = {"POST", "/leader/transfer", id.empty() ? "" : json{{"id", id}}.dump(), show_json};
  });

  if (int code = parse(app, argc, argv); code >= 0)
    return code;
  return run(c, verb);
}

}  // namespace raftnginx::cli
