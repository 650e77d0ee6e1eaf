// Certificates for a cluster, made with the OpenSSL library: a CA, node certificates (server and
// client use, naming the node and its hosts) and client certificates. `raft-nginx certs` writes
// them; the tests make their own (expired, from another CA, naming another node) the same way.
//
// Keys are ECDSA P-256. Everything is PEM.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "raftnginx/status.h"

namespace raftnginx::net {

struct Pem {
  std::string certificate;
  std::string key;
};

struct CertificateRequest {
  std::string common_name;
  // DNS names and IP addresses the certificate also names (subject alternative names).
  std::vector<std::string> hosts;
  bool server = true;  // extended key usage: serverAuth (and clientAuth always)
  std::chrono::system_clock::time_point not_before = std::chrono::system_clock::now();
  std::chrono::system_clock::time_point not_after =
      std::chrono::system_clock::now() + std::chrono::hours(24 * 825);
};

// A self-signed CA.
Result<Pem> make_ca(const std::string& common_name,
                    std::chrono::system_clock::duration valid_for = std::chrono::hours(24 * 3650));
// A certificate for `request`, signed by `ca`.
Result<Pem> make_certificate(const Pem& ca, const CertificateRequest& request);

}  // namespace raftnginx::net
