#include "transport/member.h"

namespace raftnginx::transport {

Member parse_member(std::string_view context) {
  Member m;
  if (context.find('=') == std::string_view::npos) {
    m.raft_address = std::string(context);
    return m;
  }
  while (!context.empty()) {
    const size_t space = context.find(' ');
    const std::string_view field = context.substr(0, space);
    context = space == std::string_view::npos ? std::string_view() : context.substr(space + 1);
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos)
      continue;
    const std::string_view key = field.substr(0, eq);
    std::string value(field.substr(eq + 1));
    if (key == "id") {
      m.name = std::move(value);
    } else if (key == "raft") {
      m.raft_address = std::move(value);
    } else if (key == "http") {
      m.http_address = std::move(value);
    }
  }
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

bool split_host_port(const std::string& address, std::string* host, std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
    return false;
  *host = address.substr(0, colon);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']')
    *host = host->substr(1, host->size() - 2);
  *port = address.substr(colon + 1);
  return true;
}

raft::NodeId node_id_for(std::string_view name) {
  uint64_t hash = 14695981039346656037ull;
  for (const char c : name) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash == raft::kNoNode ? 1 : hash;
}

}  // namespace raftnginx::transport
