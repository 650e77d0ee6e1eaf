#include "cli/client_command.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>

#include "cli/restore.h"
#include "http/client.h"
#include "net/address.h"
#include "net/tls.h"
#include "storage/backup.h"
#include "util/duration.h"
#include "util/printable.h"

namespace raftnginx::cli {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

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
    "4 a compare failed; 5 no endpoint could serve it (nothing was done); 6 outcome unknown (it "
    "may have applied).";

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

CLI::Validator not_empty() {
  return CLI::Validator(
      [](const std::string& v) { return v.empty() ? std::string("must not be empty") : ""; },
      "NONEMPTY");
}

void add_connection_options(CLI::App& app, Connection& c) {
  app.fallthrough();  // these may also follow the verb
  app.add_option("--endpoints", c.endpoints,
                 "Members' HTTP addresses (host:port), comma separated, tried in order")
      ->delimiter(',')
      ->allow_extra_args(false)  // after a verb, the next word is the verb's, not an endpoint
      ->envname("RAFTNGINX_ENDPOINTS")
      ->capture_default_str();
  app.add_option("--token", c.token,
                 "Bearer token of a principal (--auth); sent only over HTTPS or to loopback")
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
  app.add_option("--timeout", c.timeout,
                 "How long to keep trying the endpoints (a leader election takes about a second)")
      ->capture_default_str();
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

// A JSON value for a terminal: strings with control bytes (and any non-ASCII byte) escaped, so
// that a stored key or value can neither forge a line nor send the terminal an escape sequence.
std::string cell(const json& value) {
  if (value.is_string())
    return printable(value.get<std::string>(), SIZE_MAX);
  return value.is_null() ? "" : value.dump(-1, ' ', true, json::error_handler_t::replace);
}

std::optional<uint64_t> index_in(const json& message, const char* field) {
  if (!message.is_object() || !message.contains(field) || !message[field].is_number_unsigned())
    return std::nullopt;
  return message[field].get<uint64_t>();
}

std::string random_request_id() {
  std::random_device device;
  std::uniform_int_distribution<int> nibble(0, 15);
  std::string id = "cli-";
  for (int i = 0; i < 24; ++i)
    id += "0123456789abcdef"[nibble(device)];
  return id;
}

// One verb: its request, whether sending it again is safe (a read, or a key-value write, which
// carries an Idempotency-Key), and how to show a successful answer.
struct Verb {
  std::string method;
  std::string target;
  std::string body;
  bool resendable = true;
  std::function<int(const http::Response&, const Connection&)> show;
  std::string content_type = "application/json";
};

std::string error_text(const http::Response& r) {
  const json body = json::parse(r.body, nullptr, false);
  if (body.is_object() && body.contains("error") && body["error"].is_string())
    return "HTTP " + std::to_string(r.status) + ": " + cell(body["error"]);
  return "HTTP " + std::to_string(r.status);
}

// The exit code for an answer that is not a success, after saying why on stderr.
int failed(const http::Response& r, bool write) {
  std::cerr << "raft-nginx: " << error_text(r) << "\n";
  if (r.status == 404)
    return kNotFound;
  if (r.status == 412)
    return kCompareFailed;
  if (r.status == 504 || (write && (r.status == 500 || r.status == 502)))
    return kOutcomeUnknown;
  return kRefused;
}

// Sends requests the way the header describes: endpoints in order, redirects followed, passes
// over them repeated with a growing pause until --timeout.
class Caller {
 public:
  static Result<std::unique_ptr<Caller>> open(const Connection& c) {
    auto timeout = parse_duration(c.timeout, std::chrono::hours(1));
    if (!timeout.ok())
      return Status::invalid_argument("--timeout: " + timeout.status().message());
    if (c.cert.empty() != c.key.empty())
      return Status::invalid_argument("--cert and --key go together");
    const bool tls = !c.cacert.empty();
    if (!c.cert.empty() && !tls)
      return Status::invalid_argument("--cert needs --cacert (HTTPS)");
    http::ClientOptions options;
    if (tls) {
      if (!net::valid_dns_name(c.cluster_name))
        return Status::invalid_argument("--cluster-name: not a name certificates can carry");
      auto context = net::TlsContext::load(net::TlsFiles{c.cert, c.key, c.cacert},
                                           net::TlsContext::PeerCertificate::kRequired);
      if (!context.ok())
        return context.status();
      options.tls = std::move(context).value();
      options.server_name = c.cluster_name;
    }
    std::vector<std::string> endpoints;
    for (std::string e : c.endpoints) {
      for (auto [scheme, wants_tls] : {std::pair{"http://", false}, {"https://", true}}) {
        if (!e.starts_with(scheme))
          continue;
        if (wants_tls != tls)
          return Status::invalid_argument(
              e + ": " +
              (tls ? "plain HTTP, but --cacert asks for HTTPS"
                   : "HTTPS needs --cacert (the CA the members' certificates chain to)"));
        e.erase(0, std::string_view(scheme).size());
      }
      while (e.ends_with('/'))
        e.pop_back();
      if (auto parsed = net::parse_address(e); !parsed.ok())
        return Status::invalid_argument("--endpoints: " + parsed.status().message());
      endpoints.push_back(e);
    }
    if (endpoints.empty())
      return Status::invalid_argument("--endpoints: none given");
    auto caller = std::unique_ptr<Caller>(new Caller(std::move(options), std::move(endpoints),
                                                     c.token.empty() ? "" : "Bearer " + c.token,
                                                     *timeout, tls));
    for (const std::string& e : caller->endpoints_) {
      if (Status s = caller->may_send_to(e); !s.ok())
        return s;
    }
    return caller;
  }

  // Unavailable if no endpoint took the request; OutcomeUnknown if one may have and it could
  // not be sent again; InvalidArgument if a redirect led where the token must not go.
  Result<http::Response> call(const Verb& verb) {
    const bool write = verb.method != "GET";
    const auto deadline = Clock::now() + timeout_;
    bool maybe_delivered = false;
    std::string failures;
    for (auto pause = 100ms;; pause = std::min<std::chrono::milliseconds>(pause * 2, 1s)) {
      for (const std::string& endpoint : endpoints_) {
        std::string address = endpoint;
        for (int hop = 0; hop <= kMaxRedirects; ++hop) {
          if (Status s = may_send_to(address); !s.ok())
            return s;
          auto answer = client_.fetch(address, request(verb), left(deadline));
          if (!answer.ok()) {
            failures += "\n  " + address + ": " + answer.status().message();
            if (answer.status().code() == Status::Code::kOutcomeUnknown && write) {
              maybe_delivered = true;
              if (!verb.resendable)
                return Status::outcome_unknown("sent to " + address +
                                               ", no answer: " + answer.status().message());
            }
            break;
          }
          if (answer->status == 307 && !answer->header("X-Raft-Leader").empty()) {
            address = std::string(answer->header("X-Raft-Leader"));
            if (hop == kMaxRedirects)
              failures +=
                  "\n  " + endpoint + ": more than " + std::to_string(kMaxRedirects) + " redirects";
            continue;
          }
          const bool unsure =
              write && (answer->status == 500 || answer->status == 502 || answer->status == 504);
          if (answer->status != 503 && !(unsure && verb.resendable))
            return answer;
          maybe_delivered = maybe_delivered || unsure;
          failures += "\n  " + address + ": " + error_text(*answer);
          break;
        }
      }
      if (Clock::now() + pause >= deadline)
        break;
      std::this_thread::sleep_for(pause);  // an election, or a member restarting
    }
    const std::string what = verb.method + " " + verb.target;
    if (maybe_delivered)
      return Status::outcome_unknown(what +
                                     " may have applied; no member confirmed it:" + failures);
    return Status::unavailable("no endpoint could serve " + what + ":" + failures);
  }

  // Follows a watch (see kv watch) across endpoints; returns the exit code.
  int watch(const std::string& prefix, uint64_t from, size_t count, bool raw);
  // Saves GET `target` (a backup) into `file`, from the first endpoint that serves it whole;
  // the file is replaced only by a backup that passed its checks. Returns the exit code.
  int download(const std::string& target, const std::string& file, const Connection& c);

 private:
  static constexpr int kMaxRedirects = 3;
  // A member sends progress every few seconds (--kv-watch-progress, 5 s by default): a watch
  // that hears nothing for this long moves on. It gives up after --timeout without a member
  // that moves it on.
  static constexpr std::chrono::milliseconds kWatchIdle = 30s;
  static constexpr size_t kMaxLine = 16 << 20;  // one change: a 4 MiB value escaped in JSON
  static constexpr size_t kMaxErrorBody = 64 << 10;
  static constexpr std::chrono::milliseconds kBackupIdle = 2min;

  Caller(http::ClientOptions options, std::vector<std::string> endpoints, std::string authorization,
         std::chrono::milliseconds timeout, bool tls)
      : client_(std::move(options)),
        endpoints_(std::move(endpoints)),
        authorization_(std::move(authorization)),
        timeout_(timeout),
        tls_(tls),
        request_id_(random_request_id()) {}

  // The token goes over TLS (to a member whose certificate names the cluster) or to loopback.
  Status may_send_to(const std::string& address) const {
    if (authorization_.empty() || tls_)
      return Status();
    auto parsed = net::parse_address(address);
    if (parsed.ok() && net::resolves_to_loopback_only(parsed->host))
      return Status();
    return Status::invalid_argument("refusing to send the token unencrypted to " + address +
                                    ": give --cacert (HTTPS)");
  }

  http::Request request(const Verb& verb) const {
    http::Request r;
    r.method = verb.method;
    r.target = verb.target;
    r.body = verb.body;
    if (!verb.body.empty())
      r.headers.emplace_back("Content-Type", verb.content_type);
    if (!authorization_.empty())
      r.headers.emplace_back("Authorization", authorization_);
    if (verb.method != "GET")
      r.headers.emplace_back("Idempotency-Key", request_id_);
    return r;
  }

  static std::chrono::milliseconds left(Clock::time_point deadline) {
    return std::max<std::chrono::milliseconds>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()), 100ms);
  }

  http::Client client_;
  const std::vector<std::string> endpoints_;
  const std::string authorization_;
  const std::chrono::milliseconds timeout_;
  const bool tls_;
  const std::string request_id_;  // one per run: a retry on another endpoint applies once
};

// Prints one event: a line of its own in table form, "INDEX TYPE KEY [VALUE]".
void print_event(const json& event) {
  std::string line = cell(event.value("index", json())) + " " + cell(event.value("type", json())) +
                     " " + cell(event.value("key", json()));
  if (event.contains("value"))
    line += " " + cell(event["value"]);
  std::cout << line << "\n" << std::flush;
}

// Where a watch is: every change before `next` is shown, and `shown_at_next` of those at `next`
// (one transaction's changes share an index, and a connection may break among them).
struct WatchPosition {
  uint64_t next = 0;  // 0: from now on, until the first answer says where now is
  uint64_t shown_at_next = 0;
};

int Caller::watch(const std::string& prefix, uint64_t from, size_t count, bool raw) {
  WatchPosition at{from, 0};
  size_t shown = 0;
  std::string failures;
  auto give_up_at = Clock::now() + timeout_;
  auto pause = 100ms;
  for (size_t turn = 0;; ++turn) {
    const std::string& address = endpoints_[turn % endpoints_.size()];
    if (Status s = may_send_to(address); !s.ok()) {
      std::cerr << "raft-nginx: " << s.message() << "\n";
      return kUsage;
    }
    http::Request request;
    request.method = "GET";
    request.target = "/watch?prefix=" + percent_encode(prefix) +
                     (at.next > 0 ? "&from=" + std::to_string(at.next) : "");
    if (!authorization_.empty())
      request.headers.emplace_back("Authorization", authorization_);
    int status = 0;
    std::string pending;               // a line not yet whole, or an error's body
    size_t scanned = 0;                // of `pending`, the bytes known to hold no newline
    uint64_t skip = at.shown_at_next;  // changes at at.next this connection repeats
    const WatchPosition before = at;
    bool done = false;
    bool oversized = false;
    auto on_line = [&](std::string_view line) {
      const json message = json::parse(line, nullptr, false);
      if (auto progress = index_in(message, "progress")) {
        if (*progress >= at.next)
          at = {*progress + 1, 0};
        if (raw)
          std::cout << line << "\n" << std::flush;
        return true;
      }
      if (message.is_object() && message.contains("error")) {
        // Too slow for the member's history: on from where this watch is, on a new stream.
        std::cerr << "raft-nginx: the watch fell behind (" << cell(message["error"])
                  << "); resuming\n";
        return false;
      }
      const std::optional<uint64_t> index = index_in(message, "index");
      if (!index || *index < at.next)
        return true;
      if (*index == at.next && skip > 0) {
        --skip;
        return true;
      }
      at = *index == at.next ? WatchPosition{at.next, at.shown_at_next + 1}
                             : WatchPosition{*index, 1};
      if (raw) {
        std::cout << line << "\n" << std::flush;
      } else {
        print_event(message);
      }
      done = count > 0 && ++shown >= count;
      return !done;
    };
    http::Client::Sink sink{
        [&](const http::Response& head) {
          status = head.status;
          if (status == 200 && at.next == 0) {
            uint64_t index = 0;
            const std::string_view text = head.header("X-Raft-Index");
            if (std::from_chars(text.data(), text.data() + text.size(), index).ec == std::errc())
              at = {index + 1, 0};
          }
          return true;
        },
        [&](std::string_view piece) {
          pending += piece;
          if (status != 200)
            return pending.size() < kMaxErrorBody;
          size_t start = 0;
          for (size_t end; (end = pending.find('\n', scanned)) != std::string::npos;) {
            const bool go_on = on_line(std::string_view(pending).substr(start, end - start));
            start = scanned = end + 1;
            if (!go_on)
              return false;
          }
          pending.erase(0, start);
          scanned = pending.size();
          oversized = pending.size() > kMaxLine;
          return !oversized;
        }};
    Status s = client_.stream(address, std::move(request), kWatchIdle, sink);
    if (done)
      return kDone;
    if (oversized) {
      std::cerr << "raft-nginx: " << address << " sent a change over " << (kMaxLine >> 20)
                << " MiB: not a watch this client follows\n";
      return kRefused;
    }
    if (status != 0 && status != 200 && status != 503 && status != 410) {
      http::Response answer;
      answer.status = status;
      answer.body = pending;
      return failed(answer, false);
    }
    if (at.next != before.next || at.shown_at_next != before.shown_at_next) {
      give_up_at = Clock::now() + timeout_;  // this one moved the watch on
      failures.clear();
      pause = 100ms;
    }
    failures += "\n  " + address + ": " +
                (status == 410 ? "HTTP 410: its history no longer holds index " +
                                     std::to_string(at.next) + " (list again)"
                 : status == 503 ? std::string("HTTP 503")
                 : s.ok()        ? std::string("the stream ended")
                                 : s.message());
    if (Clock::now() >= give_up_at) {
      std::cerr << "raft-nginx: no endpoint could serve the watch:" << failures << "\n";
      return status == 410 ? kRefused : kUnreachable;
    }
    if ((turn + 1) % endpoints_.size() == 0) {
      std::this_thread::sleep_for(pause);  // every member was tried: wait before the next pass
      pause = std::min<std::chrono::milliseconds>(pause * 2, 1s);
    }
  }
}

int Caller::download(const std::string& target, const std::string& file, const Connection& c) {
  const std::string part = file + ".part";
  const auto deadline = Clock::now() + timeout_;
  std::string failures;
  for (auto pause = 100ms;; pause = std::min<std::chrono::milliseconds>(pause * 2, 1s)) {
    for (const std::string& address : endpoints_) {
      if (Status s = may_send_to(address); !s.ok()) {
        std::cerr << "raft-nginx: " << s.message() << "\n";
        return kUsage;
      }
      std::ofstream out(part, std::ios::binary | std::ios::trunc);
      std::error_code ec;  // the whole state: for its owner's eyes only
      std::filesystem::permissions(
          part, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write, ec);
      if (!out || ec) {
        std::cerr << "raft-nginx: cannot write " << part << "\n";
        return kUsage;
      }
      http::Response head;
      http::Client::Sink sink{[&](const http::Response& h) {
                                head = h;
                                return true;
                              },
                              [&](std::string_view piece) {
                                if (head.status != 200) {
                                  head.body += piece;
                                  return head.body.size() < kMaxErrorBody;
                                }
                                out.write(piece.data(), static_cast<std::streamsize>(piece.size()));
                                return static_cast<bool>(out);
                              }};
      const Status s =
          // The member writes the whole state out before it answers: patience past --timeout.
          client_.stream(address, request(Verb{"GET", target, "", true, {}}),
                         std::max(left(deadline), kBackupIdle), sink);
      out.close();
      if (head.status != 200) {
        std::remove(part.c_str());
        if (head.status != 0 && head.status != 503)
          return failed(head, false);
        failures += "\n  " + address + ": " + (head.status == 503 ? error_text(head) : s.message());
        continue;
      }
      if (!s.ok() || !out) {
        std::remove(part.c_str());
        failures += "\n  " + address + ": " + (s.ok() ? "cannot write " + part : s.message());
        continue;
      }
      std::ifstream in(part, std::ios::binary);
      const std::string data{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
      auto backup = storage::decode_backup(data);
      if (!backup.ok()) {
        std::remove(part.c_str());
        failures += "\n  " + address + ": " + backup.status().message();
        continue;
      }
      if (std::rename(part.c_str(), file.c_str()) != 0) {
        std::cerr << "raft-nginx: cannot move " << part << " to " << file << "\n";
        std::remove(part.c_str());
        return kUsage;
      }
      const storage::BackupHeader& h = backup->header;
      if (c.output == "json") {
        std::cout
            << json{{"file", file},          {"index", h.index},           {"term", h.term},
                    {"bytes", data.size()},  {"cluster_id", h.cluster_id}, {"backend", h.fsm_name},
                    {"taken_by", h.taken_by}}
                   .dump(-1, ' ', false, json::error_handler_t::replace)
            << "\n";
      } else {
        std::cout << "backup of index " << h.index << " (" << data.size() << " bytes, "
                  << printable(h.fsm_name, 64) << " backend, cluster "
                  << printable(h.cluster_id, 128) << ", taken by " << printable(h.taken_by, 64)
                  << ") written to " << file << "\n";
      }
      return kDone;
    }
    if (Clock::now() + pause >= deadline)
      break;
    std::this_thread::sleep_for(pause);
  }
  std::cerr << "raft-nginx: no endpoint could serve " << target << ":" << failures << "\n";
  return kUnreachable;
}

int show_json(const http::Response& r, const Connection&) {
  const json body = json::parse(r.body, nullptr, false);
  std::cout << (body.is_discarded() ? printable(r.body, SIZE_MAX)
                                    : body.dump(2, ' ', false, json::error_handler_t::replace))
            << "\n";
  return kDone;
}

// Prints rows under a header, each column but the last as wide as its widest cell.
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
  auto answer = (*caller)->call(verb);
  if (!answer.ok()) {
    std::cerr << "raft-nginx: " << answer.status().message() << "\n";
    switch (answer.status().code()) {
      case Status::Code::kInvalidArgument:
        return kUsage;
      case Status::Code::kOutcomeUnknown:
        return kOutcomeUnknown;
      default:
        return kUnreachable;
    }
  }
  if (answer->status >= 300)
    return failed(*answer, verb.method != "GET");
  try {
    return verb.show(*answer, c);
  } catch (const json::exception& e) {
    std::cerr << "raft-nginx: an answer this client cannot read: " << e.what() << "\n";
    return kRefused;
  }
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
    std::cout << "OK (index " << printable(r.header("X-Raft-Index"), 32) << ")\n";
  }
  return kDone;
}

std::string body_of(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
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

constexpr const char* kLevels = "stale (the default), linearizable or auto";

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
  get->add_option("--level", level, kLevels);
  get->callback([&] {
    verb = {"GET", with_query("/key/" + percent_encode(key), {{"level", level}}), "", true,
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
              std::cout << body_of(out) << "\n";
              return int{kDone};
            }};
  });

  auto* put = app.add_subcommand("put", "Set a key");
  put->add_option("key", key, "The key")->required();
  put->add_option("value", value, "The value")->required();
  put->add_option("--ttl", ttl, "Delete the key this long after the write (30s, 5m)")
      ->check(not_empty());
  put->add_option("--cas", cas, "Only if the key's mod_index is this (0: only if absent)")
      ->check(not_empty());
  put->callback([&] {
    verb = {"PUT", with_query("/key/" + percent_encode(key), {{"ttl", ttl}, {"cas", cas}}), value,
            true, show_written};
  });

  auto* del = app.add_subcommand("del", "Delete a key");
  del->add_option("key", key, "The key")->required();
  del->add_option("--cas", cas, "Only if the key's mod_index is this")->check(not_empty());
  del->callback([&] {
    verb = {"DELETE", with_query("/key/" + percent_encode(key), {{"cas", cas}}), "", true,
            show_written};
  });

  auto* list = app.add_subcommand("list", "List the keys under a prefix, at one index");
  list->add_option("prefix", prefix, "The prefix (all keys if none)");
  list->add_flag("--keys", keys_only, "Names only");
  list->add_option("--limit", limit, "At most this many (the member's limit applies)");
  list->add_option("--after", after, "Only keys after this one (the next page)");
  list->add_option("--level", level, kLevels);
  list->callback([&] {
    verb = {
        "GET",
        with_query(
            "/key?prefix=" + percent_encode(prefix) + (keys_only ? "&keys" : "&detailed"),
            {{"limit", limit ? std::to_string(limit) : ""}, {"after", after}, {"level", level}}),
        "", true, [&keys_only](const http::Response& r, const Connection& c) {
          const json rows = json::parse(r.body, nullptr, false);
          if (c.output == "json" || !rows.is_array())
            return show_json(r, c);
          std::string last;
          if (keys_only) {
            for (const json& name : rows) {
              last = cell(name);
              std::cout << last << "\n";
            }
          } else {
            std::vector<std::vector<std::string>> table;
            for (const json& row : rows) {
              if (!row.is_object())
                continue;
              last = cell(row.value("key", json()));
              table.push_back({last, cell(row.value("mod_index", json())),
                               cell(row.value("version", json())),
                               cell(row.value("value", json()))});
            }
            print_table({"KEY", "MOD_INDEX", "VERSION", "VALUE"}, table);
          }
          if (!r.header("X-Raft-Truncated").empty() && !last.empty())
            std::cerr << "(more: --after " << last << ")\n";
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
    verb = {"POST", "/txn", body, true, [](const http::Response& r, const Connection& c) {
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
        verb = {"GET", "/status", "", true, [](const http::Response& r, const Connection& c) {
                  const json st = json::parse(r.body, nullptr, false);
                  if (c.output == "json" || !st.is_object())
                    return show_json(r, c);
                  std::vector<std::vector<std::string>> rows;
                  for (const auto& [field, value] : st.items()) {
                    if (field == "leader" && value.is_object()) {
                      rows.push_back({field, cell(value.value("id", json()))});
                    } else if (!value.is_structured()) {
                      rows.push_back({cell(field), cell(value)});
                    }
                  }
                  print_table({"FIELD", "VALUE"}, rows);
                  return int{kDone};
                }};
      });

  app.add_subcommand("members", "Every member, with its addresses and whether it answers")
      ->callback([&] {
        verb = {"GET", "/nodes", "", true, [](const http::Response& r, const Connection& c) {
                  const json nodes = json::parse(r.body, nullptr, false);
                  if (c.output == "json" || !nodes.is_array())
                    return show_json(r, c);
                  std::vector<std::vector<std::string>> rows;
                  for (const json& n : nodes) {
                    if (!n.is_object())
                      continue;
                    rows.push_back({cell(n.value("id", json())),
                                    n.value("voter", json()) == true ? "voter" : "learner",
                                    cell(n.value("http_addr", json())),
                                    cell(n.value("raft_addr", json())),
                                    n.value("reachable", json()) == true ? "yes" : "no"});
                  }
                  print_table({"ID", "ROLE", "HTTP", "RAFT", "REACHABLE"}, rows);
                  return int{kDone};
                }};
      });

  // Membership calls carry no Idempotency-Key: one that may have been delivered is not sent
  // again (exit 6), since a second remove or promote would answer as if the first had failed.
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
    verb = {"POST", "/join", body_of(body), false, show_json};
  });

  auto* remove = app.add_subcommand("remove", "Remove a member");
  remove->add_option("id", id, "The member's id")->required();
  remove->callback([&] { verb = {"POST", "/remove", body_of({{"id", id}}), false, show_json}; });

  auto* promote = app.add_subcommand("promote", "Make a learner a voter");
  promote->add_option("id", id, "The learner's id")->required();
  promote->callback([&] { verb = {"POST", "/promote", body_of({{"id", id}}), false, show_json}; });

  auto* transfer =
      app.add_subcommand("transfer", "Hand leadership to a voter (the most up-to-date if none)");
  transfer->add_option("id", id, "The voter's id");
  transfer->callback([&] {
    verb = {"POST", "/leader/transfer", id.empty() ? "" : body_of({{"id", id}}), false, show_json};
  });

  if (int code = parse(app, argc, argv); code >= 0)
    return code;
  return run(c, verb);
}

int run_backup_command(int argc, char** argv) {
  CLI::App app{
      "raft-nginx backup: save a point-in-time copy of the cluster's state into FILE, "
      "from any member. The file carries the index it was taken at, a SHA-256 and the "
      "cluster's id; it is written as FILE.part and moved into place once whole and "
      "checked.\n" +
      std::string(kExitCodes)};
  app.name("raft-nginx backup");
  Connection c;
  add_connection_options(app, c);
  std::string file, level = "stale";
  app.add_option("file", file, "Where to save the backup")->required()->check(not_empty());
  app.add_option("--level", level,
                 "stale: the answering member's state as it is; linearizable: that member first "
                 "catches up with everything committed before the call")
      ->check(CLI::IsMember({"stale", "linearizable"}))
      ->capture_default_str();
  if (int code = parse(app, argc, argv); code >= 0)
    return code;
  auto caller = Caller::open(c);
  if (!caller.ok()) {
    std::cerr << "raft-nginx: " << caller.status().message() << "\n";
    return kUsage;
  }
  return (*caller)->download(level == "stale" ? "/backup" : "/backup?level=" + level, file, c);
}

int run_restore_command(int argc, char** argv) {
  CLI::App app{
      "raft-nginx restore: bring a backup (raft-nginx backup, GET /backup) back.\n"
      "  restore FILE DATA_DIR --id ID --raft-addr A --http-addr B\n"
      "    seeds the first node of a new cluster: the backup's state at its index, this node the "
      "only member, and a new cluster id (members of the old cluster are strangers to it). Start "
      "the daemon on DATA_DIR with the same id and addresses; other nodes join it with -join.\n"
      "  restore FILE --in-place [--endpoints ...]\n"
      "    replaces the running cluster's state with the backup's, through the log, on every "
      "member (admin). Writes made since the backup are gone. Not sent twice: exit 6 if the "
      "outcome is unknown.\n"
      "Both check the backup's checksum first and refuse a damaged file.\n" +
      std::string(kExitCodes)};
  app.name("raft-nginx restore");
  Connection c;
  add_connection_options(app, c);
  SeedOptions seed;
  bool in_place = false;
  app.add_option("file", seed.backup_file, "The backup")->required()->check(not_empty());
  app.add_option("data_dir", seed.data_dir, "The new node's data directory (missing or empty)");
  app.add_flag("--in-place", in_place, "Replace the running cluster's state (POST /restore)");
  app.add_option("--id", seed.member.name, "The new node's id (its -id)");
  app.add_option("--raft-addr", seed.member.raft_address, "Its raft address (its -raft-advertise)");
  app.add_option("--http-addr", seed.member.http_address, "Its HTTP address (its -http-advertise)");
  app.add_option("--log-dir", seed.log_dir, "Its -log-dir, if not DATA_DIR/log");
  if (int code = parse(app, argc, argv); code >= 0)
    return code;
  if (in_place) {
    if (!seed.data_dir.empty() || !seed.member.name.empty()) {
      std::cerr << "raft-nginx: --in-place takes no DATA_DIR or --id\n";
      return kUsage;
    }
    std::ifstream in(seed.backup_file, std::ios::binary);
    if (!in) {
      std::cerr << "raft-nginx: cannot read " << seed.backup_file << "\n";
      return kUsage;
    }
    std::string data{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (auto checked = storage::decode_backup(data); !checked.ok()) {
      std::cerr << "raft-nginx: " << seed.backup_file << ": " << checked.status().message() << "\n";
      return kRefused;
    }
    return run(
        c, Verb{"POST", "/restore", std::move(data), false, show_json, "application/octet-stream"});
  }
  if (seed.data_dir.empty() || seed.member.name.empty() || seed.member.raft_address.empty() ||
      seed.member.http_address.empty()) {
    std::cerr << "raft-nginx: give DATA_DIR, --id, --raft-addr and --http-addr (or --in-place)\n";
    return kUsage;
  }
  seed.cluster_name = c.cluster_name;
  auto id = seed_from_backup(storage::Env::posix(), seed);
  if (!id.ok()) {
    std::cerr << "raft-nginx: " << id.status().message() << "\n";
    return id.status().code() == Status::Code::kCorruption ? kRefused : kUsage;
  }
  std::cout << "seeded " << seed.data_dir << " as " << seed.member.name << ", the only member of "
            << "cluster " << *id << "; start it with -id " << seed.member.name << ", then let "
            << "the other nodes -join it\n";
  return kDone;
}

}  // namespace raftnginx::cli
