// Auth: who may do what through the HTTP API (--auth FILE).
//
// The file is a JSON array of principals, read strictly (an unknown field, a wrong type, a
// duplicate name or token is an error, so that a typo never widens access):
//
//   [{"name": "deployer", "token_sha256": "<64 hex>", "read": ["routes/"], "write": ["routes/"]},
//    {"name": "ops", "token_sha256": "<64 hex>", "read": [""], "write": [""], "admin": true},
//    {"name": "edge7", "token_sha256": "<64 hex>", "join": true}]
//
//   read, write  key prefixes the principal may read or write ("" is every key)
//   admin        membership (/join, /remove, /promote, /leader/transfer) and every operator
//                endpoint; moving an existing member (/join with a known id at new addresses)
//                needs admin and "replace": true in the request
//   join         may add itself with /join, as a learner, nothing else (a new node's credential;
//                an admin promotes it to voter with /promote)
//   config       may write the gateways' files, the keys under nginx/ (raftnginx/gateway.h),
//                which no "write" prefix grants: only config or admin
//
// A client proves who it is with `Authorization: Bearer <token>` (only the token's SHA-256 is
// stored), or, on the daemon's own TLS port with --http-verify-client, with a client
// certificate whose common name is the principal's name (never the certificate of a gateway
// relaying a request: those carry X-Raft-Gateway). No credential, or one nobody has:
// 401. A principal without the permission: 403. /healthz and /readyz are open to anyone;
// /status, /nodes and /metrics need some principal unless the operator made them public.
//
// Thread-safe: reload() swaps the table (SIGHUP) while requests are checked.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "raftnginx/status.h"

namespace raftnginx::http {

// The keys only `config` (or admin) may write.
inline constexpr std::string_view kGatewayFiles = "nginx/";

struct Principal {
  std::string name;
  std::string token_sha256;  // lower-case hex; empty: only a client certificate names it
  std::vector<std::string> read;
  std::vector<std::string> write;
  bool admin = false;
  bool join = false;
  bool config = false;

  bool may_read(std::string_view key) const;
  bool may_write(std::string_view key) const;
};

// The lower-case hex SHA-256 of `token`.
std::string sha256_hex(std::string_view token);

class AuthTable {
 public:
  // Reads and checks the file; InvalidArgument names what is wrong.
  static Result<std::shared_ptr<AuthTable>> load(const std::string& path);
  static Result<std::vector<Principal>> parse(std::string_view json);

  // The principal a request's credentials name, or null (then the answer is 401); shared, not
  // copied, since every request asks. `authorization` is the Authorization header;
  // `certificate_name` the common name of a verified client certificate, if any.
  std::shared_ptr<const Principal> authenticate(std::string_view authorization,
                                                std::string_view certificate_name) const;
  // Re-reads the file; on failure the current table stays.
  Status reload();
  const std::string& path() const { return path_; }

 private:
  explicit AuthTable(std::string path) : path_(std::move(path)) {}

  const std::string path_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Principal>> by_token_;  // by token_sha256
  std::map<std::string, std::shared_ptr<const Principal>> by_name_;
};

}  // namespace raftnginx::http
