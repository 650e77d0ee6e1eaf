#include "cli/certs_command.h"

#include <openssl/rand.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cluster/member.h"
#include "http/auth.h"
#include "net/address.h"
#include "net/certs.h"
#include "util/defaults.h"

namespace raftnginx::cli {
namespace {

Status write_file(const std::string& path, const std::string& data, mode_t mode) {
  {
    std::ofstream out(path, std::ios::trunc);
    out << data;
    if (!out)
      return Status::io_error("cannot write " + path);
  }
  if (::chmod(path.c_str(), mode) != 0)
    return Status::io_error("cannot chmod " + path);
  return Status();
}

Status write_pair(const std::string& dir, const std::string& name, const net::Pem& pem) {
  if (Status s = write_file(dir + "/" + name + ".pem", pem.certificate, 0644); !s.ok())
    return s;
  return write_file(dir + "/" + name + "-key.pem", pem.key, 0600);
}

std::string random_token() {
  unsigned char bytes[24];
  RAND_bytes(bytes, sizeof bytes);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

struct Request {
  std::string dir;
  std::vector<std::string> nodes;
  std::vector<std::string> hosts;
  std::string client = "admin";
  std::string cluster_name{defaults::kClusterName};
  int days = 825;
};

Status check(const Request& r) {
  if (r.nodes.empty())
    return Status::invalid_argument("--nodes names at least one node");
  for (const std::string& n : r.nodes) {
    if (Status s = cluster::validate_name(n); !s.ok())
      return Status::invalid_argument("--nodes: " + n.substr(0, 64) + ": " + s.message());
  }
  if (Status s = cluster::validate_name(r.client); !s.ok())
    return Status::invalid_argument("--client: " + s.message());
  if (!net::valid_dns_name(r.cluster_name))
    return Status::invalid_argument("--cluster-name must be a DNS name");
  for (const std::string& h : r.hosts) {
    if (!net::valid_address(h + ":1") && !net::valid_address("[" + h + "]:1"))
      return Status::invalid_argument("--hosts: '" + h.substr(0, 64) + "' is no host name or IP");
  }
  if (r.days < 1 || r.days > 3650)
    return Status::invalid_argument("--days must be from 1 to 3650");
  return Status();
}

// Everything a secured cluster needs, written into r.dir.
Status make_all(const Request& r, std::string* admin_token) {
  std::error_code ec;
  std::filesystem::create_directories(r.dir, ec);
  if (ec)
    return Status::io_error("cannot create " + r.dir + ": " + ec.message());
  auto ca = net::make_ca(r.cluster_name + " CA");
  if (!ca.ok())
    return ca.status();
  if (Status s = write_pair(r.dir, "ca", *ca); !s.ok())
    return s;
  const auto until = std::chrono::system_clock::now() + std::chrono::hours(24) * r.days;
  for (const std::string& node : r.nodes) {
    net::CertificateRequest req;
    req.common_name = node;
    req.hosts = r.hosts;
    req.hosts.push_back(r.cluster_name);  // HTTPS between members checks the cluster's name
    req.not_after = until;
    auto pem = net::make_certificate(*ca, req);
    if (!pem.ok())
      return pem.status();
    if (Status s = write_pair(r.dir, node, *pem); !s.ok())
      return s;
  }
  net::CertificateRequest client;
  client.common_name = r.client;
  client.server = false;
  client.not_after = until;
  auto pem = net::make_certificate(*ca, client);
  if (!pem.ok())
    return pem.status();
  if (Status s = write_pair(r.dir, r.client, *pem); !s.ok())
    return s;
  *admin_token = random_token();
  const nlohmann::json auth =
      nlohmann::json::array({{{"name", r.client},
                              {"token_sha256", http::sha256_hex(*admin_token)},
                              {"admin", true},
                              {"read", {""}},
                              {"write", {""}}}});
  if (Status s = write_file(r.dir + "/auth.json", auth.dump(2) + "\n", 0600); !s.ok())
    return s;
  return write_file(r.dir + "/" + r.client + ".token", *admin_token + "\n", 0600);
}

}  // namespace

int run_certs_command(int argc, char** argv) {
  Request r;
  CLI::App app{
      "raft-nginx certs: makes what a secured cluster needs (docs/security.md): a CA, a "
      "certificate for each node (naming the node, the cluster and --hosts; for the raft port, "
      "the HTTP port and nginx), a client certificate, and auth.json with an admin principal "
      "whose token is written beside it. Keys are written 0600."};
  app.add_option("dir", r.dir, "Directory to write into")->required();
  app.add_option("--nodes", r.nodes, "Node ids, comma separated")->required()->delimiter(',');
  app.add_option("--hosts", r.hosts,
                 "Host names and IP addresses the nodes are reached at (in every node "
                 "certificate), comma separated")
      ->delimiter(',');
  app.add_option("--client", r.client, "Name of the client certificate and admin principal")
      ->capture_default_str();
  app.add_option("--cluster-name", r.cluster_name, "The cluster's --cluster-name")
      ->capture_default_str();
  app.add_option("--days", r.days, "Validity of the certificates")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (Status s = check(r); !s.ok()) {
    std::cerr << "raft-nginx certs: " << s.message() << "\n";
    return 2;
  }
  std::string token;
  if (Status s = make_all(r, &token); !s.ok()) {
    std::cerr << "raft-nginx certs: " << s.message() << "\n";
    return 1;
  }
  const std::string d = std::filesystem::absolute(r.dir).lexically_normal().string();
  std::cout << "Wrote a CA, certificates for " << r.nodes.size() << " nodes and client " << r.client
            << ", and auth.json into " << d << ".\n\nFlags for node N:\n"
            << "  --node-cert " << d << "/N.pem --node-key " << d << "/N-key.pem --node-ca " << d
            << "/ca.pem \\\n  --http-cert " << d << "/N.pem --http-key " << d
            << "/N-key.pem --http-ca " << d << "/ca.pem \\\n  --auth " << d
            << "/auth.json --token-file " << d << "/" << r.client << ".token --cluster-name "
            << r.cluster_name << "\n\nA client:\n  curl --cacert " << d << "/ca.pem -H "
            << "\"Authorization: Bearer $(cat " << d << "/" << r.client
            << ".token)\" https://HOST:PORT/status\n";
  return 0;
}

}  // namespace raftnginx::cli
