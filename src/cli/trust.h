// Trust: what the daemon checks and presents, loaded from the files its flags name
// (docs/security.md): the TLS contexts of the raft port, of the HTTP port and of its own HTTPS
// requests to members, the principals of --auth, and its own token for joining. reload() re-reads
// them all (SIGHUP); a part that fails to load keeps its previous state and says so in the log.
#pragma once

#include <memory>
#include <string>

#include "cli/options.h"
#include "http/auth.h"

namespace raftnginx::net {
class TlsContext;
}

namespace raftnginx::cli {

struct Trust {
  std::shared_ptr<net::TlsContext> node;         // mutual TLS between nodes; null: plaintext
  std::shared_ptr<net::TlsContext> http_server;  // TLS on the HTTP port; null: plaintext
  std::shared_ptr<net::TlsContext> http_client;  // the daemon's own HTTPS requests to members
  std::shared_ptr<http::AuthTable> auth;         // null: no auth
  std::string own_authorization;                 // "Bearer <token>" from --token-file, or ""

  static Result<Trust> load(const DaemonOptions& options);
  void reload() const;
};

}  // namespace raftnginx::cli
