// The gateways' files (raftnginx/gateway.h) on disk, and nginx's verdict on them.
//
// A set of files lives in a directory `cluster` beside the nginx.conf that includes it
// (conf.h: `include cluster/http/*.conf;` and `include cluster/server/*.conf;`), so that their
// own includes (`cluster/maps/NAME.map`) resolve against whichever copy nginx reads: a staged
// candidate under <prefix>/stage or <prefix>/check, or the live one under <prefix>, where
// `cluster` is a symbolic link swapped in one rename.
//
// Everything here treats the files as hostile: their paths follow the grammar below, their sizes
// are bounded, and they are only ever written below the directory given.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "nginx/conf.h"
#include "raftnginx/gateway.h"

namespace raftnginx::nginx {

inline constexpr size_t kMaxGatewayFiles = 1000;
inline constexpr size_t kMaxGatewayFileBytes = 1 << 20;
inline constexpr size_t kMaxGatewayBytes = 16 << 20;

// OK if `path` is "http/NAME.conf", "server/NAME.conf" or "maps/NAME.map" (NAME: 1 to 64 of
// A-Z a-z 0-9 '_' '-'); InvalidArgument otherwise.
Status check_gateway_path(std::string_view path);
// What a file may say. nginx runs its configuration as the master's user (root, where the
// daemon runs as root), and the files come from the network: so no directive that names a file
// or a path on this machine (include, except of cluster/maps/NAME.map; logs; temp and cache
// paths; root, alias, try_files, index; certificates, keys and password files; ssi, perl, js,
// lua), none that binds (listen, *_bind, and server blocks at http level: their bind could fail
// a reload), no Unix socket and no variable where requests go (*_pass, upstream servers), and
// none of the conf's own names (anything holding "raftnginx", in any case). Read with nginx's
// own token rules (ngx_conf_read_token: quotes and '#' only where a token starts), so that
// neither quoting nor a '#' inside a word hides anything.
Status check_gateway_directives(std::string_view path, std::string_view text);
// The paths, the number and sizes of the files, no NUL byte in any, and what each may say.
Status check_gateway_files(const GatewayFiles& files);

// Writes `conf` as <dir>/nginx.conf and `files` under <dir>/cluster (made afresh), then asks
// `binary` whether it takes them (nginx -t), for at most `timeout`. InvalidArgument carries
// nginx's message, a file named by its path ("http/a.conf:3").
Status test_gateway(const std::string& binary, const GatewayConf& conf, const std::string& dir,
                    const GatewayFiles& files,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Makes `files` the live set under conf.prefix: written to a directory of their own, then
// <prefix>/cluster pointed at it in one rename; older sets are removed. REQUIRES: `files`
// passed test_gateway() (whose check_gateway_files() makes their paths safe to write).
Status install_gateway_files(const std::string& prefix, const GatewayFiles& files,
                             uint64_t generation);

// GatewayCheck with this node's nginx binary, in <conf.prefix>/check: against the conf its
// gateway runs now (follow()), or, where the node runs no nginx, `conf`.
class NginxCheck final : public GatewayCheck {
 public:
  NginxCheck(std::string binary, GatewayConf conf)
      : binary_(std::move(binary)), conf_(std::move(conf)) {}
  Status check(const GatewayFiles& candidate) const override;
  // From now on, the conf `running` returns (the gateway's, with its members and leader).
  void follow(std::function<GatewayConf()> running);

 private:
  const std::string binary_;
  mutable std::mutex mu_;  // one candidate at a time in the check directory
  GatewayConf conf_;
  std::function<GatewayConf()> running_;
};

}  // namespace raftnginx::nginx
