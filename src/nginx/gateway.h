// Gateway: the nginx in front of this node, run by the daemon. It writes the conf (conf.h)
// under its prefix, starts nginx in the foreground as a child process (call start() from a
// thread that lives as long as the daemon: nginx is told to quit when that thread ends), rewrites
// the conf and reloads nginx (SIGHUP, as `nginx -s reload` does) when the members' addresses
// or the leader change, and stops it gracefully (SIGQUIT) with the daemon.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nginx/conf.h"
#include "util/status.h"

namespace raftnginx::nginx {

class Gateway {
 public:
  // Writes the conf and starts `binary` (an nginx); fails if nginx exits at once, with the
  // reason from its error log.
  static Result<std::unique_ptr<Gateway>> start(const std::string& binary, GatewayConf conf);
  ~Gateway();

  // Rewrites the conf and reloads nginx if `members` differ from the current ones, or `leader`
  // (the HTTP address writes go to first) does; an empty `leader` keeps the last one named,
  // since a write sent to a stale leader still arrives (conf.h). The reload is asynchronous:
  // nginx serves the new conf's generation (kGenerationPath) once it took effect, and whoever
  // sees it calls confirm().
  Status update(std::vector<std::string> members, const std::string& leader);
  uint64_t generation();
  void confirm(uint64_t generation);
  // nginx serves exactly `members` (they are the latest conf's, and its generation was
  // confirmed).
  bool serves(std::vector<std::string> members);
  // host:port to reach this nginx from the same machine.
  std::string probe_address() const;
  // False once nginx exited without being asked to (the daemon then stops too).
  bool running();
  // Graceful stop: nginx finishes the requests in flight; killed after `timeout`.
  void stop(std::chrono::milliseconds timeout);

 private:
  Gateway(std::string binary, GatewayConf conf)
      : binary_(std::move(binary)), conf_(std::move(conf)) {}
  Status write_conf();
  std::string error_log_tail() const;

  const std::string binary_;
  std::mutex mu_;
  GatewayConf conf_;
  uint64_t confirmed_ = 0;
  pid_t pid_ = -1;
};

}  // namespace raftnginx::nginx
