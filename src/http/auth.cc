#include "http/auth.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cluster/member.h"

namespace raftnginx::http {
namespace {

using json = nlohmann::json;

bool prefix_covers(const std::vector<std::string>& prefixes, std::string_view key) {
  for (const std::string& p : prefixes) {
    if (key.starts_with(p))
      return true;
  }
  return false;
}

bool is_hex64(const std::string& s) {
  if (s.size() != 64)
    return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  }
  return true;
}

Status field_error(size_t i, const std::string& what) {
  return Status::invalid_argument("auth: principal " + std::to_string(i) + ": " + what);
}

Result<std::vector<std::string>> prefixes(const json& v, size_t i, const char* field) {
  if (!v.is_array())
    return field_error(i, std::string(field) + " must be an array of key prefixes");
  std::vector<std::string> out;
  for (const json& p : v) {
    if (!p.is_string())
      return field_error(i, std::string(field) + " must hold strings");
    out.push_back(p.get<std::string>());
  }
  return out;
}

Result<Principal> parse_principal(const json& doc, size_t i) {
  if (!doc.is_object())
    return field_error(i, "must be an object");
  Principal p;
  for (const auto& [key, value] : doc.items()) {
    if (key == "name" || key == "token_sha256") {
      if (!value.is_string())
        return field_error(i, key + " must be a string");
      (key == "name" ? p.name : p.token_sha256) = value.get<std::string>();
    } else if (key == "read" || key == "write") {
      auto list = prefixes(value, i, key.c_str());
      if (!list.ok())
        return list.status();
      (key == "read" ? p.read : p.write) = std::move(list).value();
    } else if (key == "admin" || key == "join" || key == "config") {
      if (!value.is_boolean())
        return field_error(i, key + " must be true or false");
      (key == "admin" ? p.admin : key == "join" ? p.join : p.config) = value.get<bool>();
    } else {
      return field_error(i, "unknown field \"" + key.substr(0, 32) + "\"");
    }
  }
  if (Status s = cluster::validate_name(p.name); !s.ok())
    return field_error(i, "name: " + s.message());
  if (!p.token_sha256.empty() && !is_hex64(p.token_sha256))
    return field_error(i, "token_sha256 must be 64 lower-case hex digits (sha256sum of the token)");
  return p;
}

}  // namespace

bool Principal::may_read(std::string_view key) const {
  return admin || prefix_covers(read, key);
}

bool Principal::may_write(std::string_view key) const {
  if (key.starts_with(kGatewayFiles))
    return admin || config;
  return admin || prefix_covers(write, key);
}

std::string sha256_hex(std::string_view token) {
  // Fetched once: OpenSSL 3 looks the algorithm up, under locks, on every one-shot call.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  if (kSha256 == nullptr ||
      EVP_Digest(token.data(), token.size(), digest, nullptr, kSha256, nullptr) != 1)
    return std::string();  // matches no principal's hash
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

Result<std::vector<Principal>> AuthTable::parse(std::string_view text) {
  const json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_array())
    return Status::invalid_argument("auth: the file must be a JSON array of principals");
  std::vector<Principal> out;
  std::map<std::string, size_t> names, tokens;
  for (size_t i = 0; i < doc.size(); ++i) {
    auto p = parse_principal(doc[i], i);
    if (!p.ok())
      return p.status();
    if (!names.emplace(p->name, i).second)
      return field_error(i, "the name " + p->name + " is used twice");
    if (!p->token_sha256.empty() && !tokens.emplace(p->token_sha256, i).second)
      return field_error(i, "its token is another principal's too");
    out.push_back(std::move(p).value());
  }
  return out;
}

Result<std::shared_ptr<AuthTable>> AuthTable::load(const std::string& path) {
  std::shared_ptr<AuthTable> table(new AuthTable(path));
  if (Status s = table->reload(); !s.ok())
    return s;
  return table;
}

Status AuthTable::reload() {
  std::ifstream in(path_);
  if (!in)
    return Status::io_error("auth: cannot read " + path_);
  std::stringstream text;
  text << in.rdbuf();
  auto principals = parse(text.str());
  if (!principals.ok())
    return principals.status();
  std::map<std::string, std::shared_ptr<const Principal>> by_token, by_name;
  for (Principal& p : principals.value()) {
    auto shared = std::make_shared<const Principal>(std::move(p));
    if (!shared->token_sha256.empty())
      by_token[shared->token_sha256] = shared;
    by_name[shared->name] = shared;
  }
  std::lock_guard lock(mu_);
  by_token_ = std::move(by_token);
  by_name_ = std::move(by_name);
  return Status();
}

std::shared_ptr<const Principal> AuthTable::authenticate(std::string_view authorization,
                                                         std::string_view certificate_name) const {
  constexpr std::string_view kBearer = "Bearer ";
  std::lock_guard lock(mu_);
  if (authorization.starts_with(kBearer)) {
    auto it = by_token_.find(sha256_hex(authorization.substr(kBearer.size())));
    return it == by_token_.end() ? nullptr : it->second;
  }
  if (!authorization.empty() || certificate_name.empty())
    return nullptr;
  auto it = by_name_.find(std::string(certificate_name));
  return it == by_name_.end() ? nullptr : it->second;
}

}  // namespace raftnginx::http
