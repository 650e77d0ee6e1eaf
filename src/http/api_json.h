// Helpers the API's route files share for reading request bodies and writing members. Internal
// to src/http.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "node/node.h"
#include "raftnginx/status.h"

namespace raftnginx::http {

using json = nlohmann::json;

// The body as a JSON object, or InvalidArgument.
inline Result<json> parse_object(const std::string& body) {
  json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded())
    return Status::invalid_argument("request body is not valid JSON");
  if (!doc.is_object())
    return Status::invalid_argument("request body must be a JSON object");
  return doc;
}

// The string field `name` of `doc`: "" if absent and not required.
inline Result<std::string> string_field(const json& doc, const char* name, bool required) {
  auto it = doc.find(name);
  if (it == doc.end()) {
    if (required)
      return Status::invalid_argument(std::string("missing field \"") + name + "\"");
    return std::string();
  }
  if (!it->is_string())
    return Status::invalid_argument(std::string("field \"") + name + "\" must be a string");
  if (required && it->get_ref<const std::string&>().empty())
    return Status::invalid_argument(std::string("field \"") + name + "\" must not be empty");
  return it->get<std::string>();
}

// A member as /status, /nodes and membership answers show it.
inline json member_json(raft::NodeId id, const node::NodeStatus& st) {
  const cluster::Member* m = st.membership.find(id);
  return json{{"id", st.membership.name_of(id)},
              {"raft_addr", m ? m->raft_address : std::string()},
              {"http_addr", m ? m->http_address : std::string()},
              {"voter", st.membership.conf.voters.count(id) > 0}};
}

}  // namespace raftnginx::http
