#include "cluster/member.h"

#include "net/address.h"
#include "util/checksum.h"

namespace raftnginx::cluster {

Status validate_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength)
    return Status::invalid_argument("a member id must have 1 to 64 characters");
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok)
      return Status::invalid_argument(
          "a member id may hold only letters, digits, '.', '_' and '-'");
  }
  return Status();
}

Status validate_member(const Member& member) {
  if (!member.name.empty()) {
    if (Status s = validate_name(member.name); !s.ok())
      return s;
  }
  for (const std::string* address : {&member.raft_address, &member.http_address}) {
    if (address->empty())
      continue;
    if (auto parsed = net::parse_address(*address); !parsed.ok())
      return parsed.status();
  }
  return Status();
}

Result<Member> parse_member(std::string_view context) {
  Member m;
  if (context.find('=') == std::string_view::npos) {
    m.raft_address = std::string(context);
  } else {
    while (!context.empty()) {
      const size_t space = context.find(' ');
      const std::string_view field = context.substr(0, space);
      context = space == std::string_view::npos ? std::string_view() : context.substr(space + 1);
      const size_t eq = field.find('=');
      if (eq == std::string_view::npos)
        return Status::invalid_argument("member record field without '='");
      const std::string_view key = field.substr(0, eq);
      std::string* slot = key == "id"     ? &m.name
                          : key == "raft" ? &m.raft_address
                          : key == "http" ? &m.http_address
                                          : nullptr;
      if (slot == nullptr || !slot->empty())
        return Status::invalid_argument("member record field '" + std::string(key.substr(0, 16)) +
                                        "' is unknown or repeated");
      *slot = std::string(field.substr(eq + 1));
    }
  }
  if (Status s = validate_member(m); !s.ok())
    return s;
  return m;
}

std::string encode_member(const Member& member) {
  std::string out;
  auto add = [&out](std::string_view key, const std::string& value) {
    if (value.empty())
      return;
    if (!out.empty())
      out += ' ';
    out.append(key).append("=").append(value);
  };
  add("id", member.name);
  add("raft", member.raft_address);
  add("http", member.http_address);
  return out;
}

raft::NodeId node_id_for(std::string_view name) {
  const uint64_t hash = fnv1a64(name);
  return hash == raft::kNoNode ? 1 : hash;
}

}  // namespace raftnginx::cluster
