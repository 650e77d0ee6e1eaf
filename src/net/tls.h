// TLS for the daemon's ports (OpenSSL through Boost.Asio's ssl): the files a context is made of,
// a context that can be re-read while connections run, and who a peer's certificate says it is.
//
// Reload: each connection takes the context that is current when it starts; reload() makes a new
// one from the files and swaps it in, so that certificates rotate (SIGHUP) without a restart and
// without dropping a connection. A failed reload keeps the old context.
//
// Include only from files that use Asio already. Thread-safe.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "raftnginx/status.h"

namespace raftnginx::net {

struct TlsFiles {
  std::string cert;  // PEM certificate chain; with `key`, empty for a client that presents none
  std::string key;   // PEM private key
  std::string ca;    // PEM CA certificates that peers' certificates must chain to
};

class TlsContext {
 public:
  enum class PeerCertificate { kRequired, kOptional, kNotAsked };

  // Loads `files` (every file must load and the key must match the certificate). The context
  // verifies peers against files.ca when `peers` asks for a certificate, and speaks TLS 1.2 or
  // newer only.
  static Result<std::shared_ptr<TlsContext>> load(TlsFiles files, PeerCertificate peers);

  // The context new connections use.
  std::shared_ptr<boost::asio::ssl::context> current() const;
  // Re-reads the files; on failure the current context stays and the error is returned.
  Status reload();
  // When the current certificate stops being valid.
  std::chrono::system_clock::time_point not_after() const;
  const TlsFiles& files() const { return files_; }

 private:
  TlsContext(TlsFiles files, PeerCertificate peers) : files_(std::move(files)), peers_(peers) {}
  Result<std::shared_ptr<boost::asio::ssl::context>> build(
      std::chrono::system_clock::time_point* not_after) const;

  const TlsFiles files_;
  const PeerCertificate peers_;
  mutable std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::chrono::system_clock::time_point not_after_;
};

// Who a verified peer certificate says its holder is. Empty without a certificate.
struct PeerIdentity {
  std::string common_name;             // the subject's
  std::vector<std::string> dns_names;  // its DNS subject alternative names

  // Whether one of the DNS names is `cluster_name`: what marks a node certificate of that
  // cluster (client certificates of the same CA do not name it).
  bool names_cluster(std::string_view cluster_name) const;
  // "CN=..., DNS=..." for logs (each name cut at 64 bytes, made printable).
  std::string describe() const;
};

PeerIdentity peer_identity(SSL* ssl);

}  // namespace raftnginx::net
