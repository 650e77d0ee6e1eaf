#include "cli/repair.h"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "raftnginx/env.h"

namespace raftnginx::cli {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kMarker = "REPAIR";
constexpr const char* kAsidePrefix = "damaged-";
// The marker's contents: a rebuild is pending; and once the cluster said so, that the node was
// a voter before it rejoined as a learner.
constexpr const char* kMarkerPending = "repair pending\n";
constexpr const char* kMarkerWasVoter = "repair pending\nwas a voter\n";

std::string utc_stamp() {
  char out[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(out, sizeof out, "%Y%m%dT%H%M%SZ", &tm);
  return out;
}

// POSTs `body` to `path` on the leader (following its redirects); retries with backoff until it
// gets an answer that is not a 5xx or `stop` is set.
Result<http::Response> post_to_leader(http::Client* client, const DaemonOptions& options,
                                      const std::string& authorization, const std::string& path,
                                      const std::string& body, const std::atomic<bool>* stop) {
  std::string target = options.join;
  auto backoff = 200ms;
  while (!*stop) {
    http::Request request;
    request.method = "POST";
    request.target = path;
    request.headers.emplace_back("Content-Type", "application/json");
    if (!authorization.empty())
      request.headers.emplace_back("Authorization", authorization);
    request.body = body;
    auto r = client->fetch(target, std::move(request), 10s);
    if (r.ok() && r->status == 307 && !r->header("X-Raft-Leader").empty()) {
      target = std::string(r->header("X-Raft-Leader"));
      continue;
    }
    if (r.ok() && r->status < 500)
      return r;
    spdlog::warn(
        "repair: {} through {} failed: {}; retrying", path, target,
        r.ok() ? "HTTP " + std::to_string(r->status) + " " + r->body : r.status().message());
    target = options.join;
    for (auto waited = 0ms; waited < backoff && !*stop; waited += 50ms)
      std::this_thread::sleep_for(50ms);
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5s);
  }
  return Status::unavailable("stopped");
}

}  // namespace

bool repair_requested(const DaemonOptions& options) {
  return options.repair || fs::exists(fs::path(options.data_dir) / kMarker);
}

Result<std::string> set_aside(const std::string& data_dir, const std::string& log_dir) {
  storage::Env* env = storage::Env::posix();
  if (Status s = env->create_dirs(data_dir); !s.ok())
    return s;
  // The marker first (written and synced with the directory): a crash part way through leaves
  // a directory that the next start rebuilds, never an empty one it would take for a member's.
  const std::string marker = data_dir + "/" + kMarker;
  if (!fs::exists(marker)) {
    if (Status s = env->write_file_atomically(marker, kMarkerPending); !s.ok())
      return s;
  }
  std::error_code ec;
  std::vector<fs::path> moving;
  for (const auto& entry : fs::directory_iterator(data_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(kAsidePrefix) && name != kMarker)
      moving.push_back(entry.path());
  }
  std::string aside;
  if (!moving.empty()) {
    aside = (fs::path(data_dir) / (kAsidePrefix + utc_stamp())).string();
    fs::create_directories(aside, ec);
    for (const fs::path& p : moving) {
      if (!ec)
        fs::rename(p, fs::path(aside) / p.filename(), ec);
    }
    if (ec)
      return Status::io_error("cannot move the data aside into " + aside + ": " + ec.message());
  }
  const fs::path log = fs::path(log_dir).lexically_normal();
  if (!log_dir.empty() && fs::exists(log) &&
      !log.string().starts_with(fs::path(data_dir).lexically_normal().string() + "/")) {
    if (aside.empty())
      aside = (fs::path(data_dir) / (kAsidePrefix + utc_stamp())).string();
    fs::create_directories(aside, ec);
    if (!ec)
      fs::rename(log, fs::path(aside) / "log", ec);
    if (ec)
      return Status::io_error("cannot move the log " + log_dir + " aside: " + ec.message());
    if (Status s = env->sync_dir(fs::path(log).parent_path().string()); !s.ok())
      return s;
  }
  if (!aside.empty()) {
    if (Status s = env->sync_dir(aside); !s.ok())
      return s;
  }
  if (Status s = env->sync_dir(data_dir); !s.ok())
    return s;
  return aside;
}

Result<bool> rejoin_as_learner(http::Client* client, const DaemonOptions& options,
                               const std::string& authorization, const std::atomic<bool>* stop) {
  const std::string body = nlohmann::json{
      {"id", options.id},
      {"addr", options.raft_advertise},
      {"http_addr", options.http_advertise},
      {"voter", false},
      {"replace", true},
      {"repair", true}}.dump();
  auto r = post_to_leader(client, options, authorization, "/join", body, stop);
  if (!r.ok())
    return r.status();
  if (r->status != 200) {
    return Status::invalid_argument("the cluster refused to take this member back: HTTP " +
                                    std::to_string(r->status) + " " + r->body);
  }
  // The old role is kept in the marker: once demoted, asking again (after a lost answer or a
  // restart) would only say "learner".
  storage::Env* env = storage::Env::posix();
  const std::string marker = options.data_dir + "/" + kMarker;
  auto recorded = env->read_file(marker);
  if (recorded.ok() && *recorded == kMarkerWasVoter)
    return true;
  const auto doc = nlohmann::json::parse(r->body, nullptr, false);
  const bool was_voter = doc.is_object() && doc.value("was_voter", false);
  if (was_voter) {
    if (Status s = env->write_file_atomically(marker, kMarkerWasVoter); !s.ok())
      return s;
  }
  return was_voter;
}

void finish_repair(node::Node* node, http::Client* client, const DaemonOptions& options,
                   const std::string& authorization, bool was_voter,
                   const std::atomic<bool>* stop) {
  // Caught up: a leader is known and everything it had committed when we asked is applied.
  raft::Index target = 0;
  while (!*stop) {
    const node::NodeStatus st = node->status();
    if (st.raft.leader != raft::kNoNode && target == 0 && st.raft.hard_state.commit > 0)
      target = st.raft.hard_state.commit;
    if (target > 0 && st.applied >= target)
      break;
    std::this_thread::sleep_for(100ms);  // polling the node's progress; nothing to wait on
  }
  if (*stop)
    return;
  spdlog::info("repair: caught up with the cluster at index {}", target);
  if (was_voter) {
    auto r = post_to_leader(client, options, authorization, "/promote",
                            nlohmann::json{{"id", options.id}}.dump(), stop);
    if (!r.ok())
      return;
    if (r->status != 200 && r->status != 409) {
      spdlog::warn(
          "repair: this node could not promote itself back to voter (HTTP {} {}); an "
          "admin can: POST /promote {{\"id\": \"{}\"}}",
          r->status, r->body, options.id);
    } else {
      spdlog::info("repair: promoted back to voter");
    }
  }
  std::error_code ec;
  fs::remove(fs::path(options.data_dir) / kMarker, ec);
  spdlog::info("repair: done; the damaged data stays under {}/{}* until you delete it",
               options.data_dir, kAsidePrefix);
}

int run_repair_command(int argc, char** argv) {
  std::string data_dir;
  CLI::App app{
      "raft-nginx repair: sets a damaged node's data aside (under DATA_DIR/damaged-<time>/) and "
      "marks the directory, so that the node's next start (with its usual flags, -join among "
      "them) rebuilds it from its peers: it rejoins as a learner, catches up, and is promoted "
      "back to its old role. Stop the node first."};
  app.add_option("data-dir", data_dir, "The node's data directory")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  auto aside = set_aside(data_dir);
  if (!aside.ok()) {
    std::cerr << "raft-nginx repair: " << aside.status().message() << "\n";
    return 1;
  }
  std::cout << (aside->empty() ? "nothing to set aside in " + data_dir
                               : "moved the data of " + data_dir + " to " + *aside)
            << "\nstart the node as usual (with -join <a member>): it rebuilds from its peers\n";
  return 0;
}

}  // namespace raftnginx::cli
