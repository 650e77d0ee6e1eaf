#include "cli/trust.h"

#include <spdlog/spdlog.h>

#include <fstream>

#include "net/tls.h"

namespace raftnginx::cli {

Result<Trust> Trust::load(const DaemonOptions& o) {
  using Peers = net::TlsContext::PeerCertificate;
  Trust t;
  if (!o.node_cert.empty()) {
    auto node = net::TlsContext::load({o.node_cert, o.node_key, o.node_ca}, Peers::kRequired);
    if (!node.ok())
      return node.status();
    t.node = std::move(node).value();
  }
  if (!o.http_cert.empty()) {
    const Peers clients = o.http_verify_client ? Peers::kRequired
                          : o.http_ca.empty()  ? Peers::kNotAsked
                                               : Peers::kOptional;
    auto server = net::TlsContext::load({o.http_cert, o.http_key, o.http_ca}, clients);
    if (!server.ok())
      return server.status();
    t.http_server = std::move(server).value();
    // Members' HTTPS certificates come from the clients' CA, or else from the cluster's.
    const std::string& ca = o.http_ca.empty() ? o.node_ca : o.http_ca;
    if (!ca.empty()) {
      auto client = net::TlsContext::load({o.http_cert, o.http_key, ca}, Peers::kRequired);
      if (!client.ok())
        return client.status();
      t.http_client = std::move(client).value();
    }
  }
  if (!o.auth_file.empty()) {
    auto auth = http::AuthTable::load(o.auth_file);
    if (!auth.ok())
      return auth.status();
    t.auth = std::move(auth).value();
  }
  if (!o.token_file.empty()) {
    std::ifstream in(o.token_file);
    std::string token;
    if (!in || !std::getline(in, token) || token.empty())
      return Status::invalid_argument("--token-file: cannot read a token from " + o.token_file);
    t.own_authorization = "Bearer " + token;
  }
  return t;
}

void Trust::reload() const {
  for (const auto& [what, tls] : {std::pair<const char*, net::TlsContext*>{"node TLS", node.get()},
                                  {"HTTP TLS", http_server.get()},
                                  {"HTTPS to members", http_client.get()}}) {
    if (tls == nullptr)
      continue;
    if (Status s = tls->reload(); s.ok()) {
      spdlog::info("{}: certificate re-read from {}", what, tls->files().cert);
    } else {
      spdlog::error("{}: kept the previous certificate: {}", what, s.message());
    }
  }
  if (auth) {
    if (Status s = auth->reload(); s.ok()) {
      spdlog::info("auth: principals re-read from {}", auth->path());
    } else {
      spdlog::error("auth: kept the previous principals: {}", s.message());
    }
  }
}

}  // namespace raftnginx::cli
