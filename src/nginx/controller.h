// GatewayController: keeps this node's nginx serving the cluster as it is. The daemon feeds it
// the members and the leader whenever the node reports a change (Node::observe), and the
// gateways' files from the replicated state (raftnginx/gateway.h); the controller renders and
// reloads nginx on a thread of its own (never on the node's), then confirms that the reload took
// effect by reading the generation the new conf serves (kGenerationPath), retrying with backoff
// until nginx's new workers answer. /readyz asks serves().
//
// New files are first tested with nginx -t on a staged copy (config_files.h); files this nginx
// refuses are not installed: it keeps serving its last good set, and files_state() says which
// file, at which index, and what nginx said. Files nginx -t passed but whose reload nginx did
// not take within kReloadDeadline (a shared zone resized, say) are rolled back to the last set
// it was seen serving. A refused set is not tried again until the files change.
//
// Thread-safe.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nginx/gateway.h"
#include "raftnginx/gateway.h"

namespace raftnginx::nginx {

// What nginx should serve: every member's HTTP address, and the leader writes go to first
// (empty: keep the last one named, since a write sent to a stale leader still arrives).
struct GatewayTarget {
  std::vector<std::string> members;
  std::string leader;
};

// The members nginx can be given: those whose host is an IP address or resolves now. nginx
// resolves upstream names when it loads a conf, and one it cannot resolve would make it refuse
// the whole conf, on every node; such a member is left out (and named in `left_out`) until it
// resolves.
std::vector<std::string> resolvable(const std::vector<std::string>& members,
                                    std::vector<std::string>* left_out);

struct GatewayFilesState {
  raft::Index served_index = 0;  // the index of the files nginx is seen serving (0: none yet)
  raft::Index latest_index = 0;  // the index of the latest files handed over
  // The latest files nginx refused (then served_index < latest_index); empty: none.
  std::string failed_key;
  raft::Index failed_index = 0;
  std::string failure;  // nginx's message
};

class GatewayController {
 public:
  static constexpr std::chrono::seconds kReloadDeadline{10};

  // GETs `path` from the nginx at `address`; the body, or why not.
  using Probe =
      std::function<Result<std::string>(const std::string& address, const std::string& path)>;

  // Takes over the running `gateway`, whose conf is `conf`; `binary` is its nginx, for tests.
  GatewayController(std::unique_ptr<Gateway> gateway, GatewayConf conf, std::string binary,
                    Probe probe);
  ~GatewayController();

  // Non-blocking: the controller catches up on its own thread.
  void update(GatewayTarget target);
  // The gateways' files as of an index; non-blocking.
  void update_files(GatewayFiles files);
  GatewayFilesState files_state() const;
  // The conf nginx was told to serve last.
  GatewayConf conf() const;
  // Makes nginx re-read its conf and the files it names (rotated certificates), and tries a
  // refused set of files again; non-blocking.
  void reload();
  // nginx serves exactly `members` (they are the latest conf's, and its reload was confirmed).
  bool serves(std::vector<std::string> members);
  // Stops the controller and nginx (gracefully, killed after `timeout`).
  void stop(std::chrono::milliseconds timeout);

 private:
  void run();
  // Tests `files` and installs them if nginx takes them, else notes the refusal. Not under mu_.
  void take_files(const GatewayConf& conf, const GatewayFiles& files);

  std::unique_ptr<Gateway> gateway_;
  const std::string binary_;
  const Probe probe_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  GatewayConf conf_;  // what nginx was told to serve
  // The members asked for, before unresolvable ones are left out.
  std::vector<std::string> wanted_;
  GatewayTarget pending_;  // what it should serve next
  bool has_pending_ = false;
  bool reload_asked_ = false;
  GatewayFiles pending_files_;
  bool has_files_ = false;
  std::optional<GatewayFiles> confirmed_files_;  // the files nginx was seen serving
  std::optional<GatewayFiles> refused_files_;    // the last set refused, by -t or by the reload
  std::optional<GatewayFiles> latest_files_;     // the last set handed over
  std::chrono::steady_clock::time_point reloaded_at_;  // when the unconfirmed reload was asked
  bool rolled_back_ = false;  // for the unconfirmed generation: its files are refused already
  // The files installed last (nginx serves them once confirmed_); unknown: a previous run left
  // some, so the first set is installed whatever it holds.
  std::optional<GatewayFiles> served_files_;
  struct {
    raft::Index index = 0;
    uint64_t generation = 0;  // the conf generation that first included them
  } installed_;
  GatewayFilesState files_state_;
  uint64_t confirmed_ = 0;  // the latest generation nginx was seen serving
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace raftnginx::nginx
