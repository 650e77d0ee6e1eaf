// What a follower does with a write: send the client to the leader (307), relay it, or refuse it.
#pragma once

#include <optional>
#include <string_view>

namespace raftnginx::http {

enum class WritePolicy { kRedirect, kForward, kReject };

// "redirect", "forward" or "reject"; nullopt for anything else.
inline std::optional<WritePolicy> parse_write_policy(std::string_view text) {
  if (text == "redirect")
    return WritePolicy::kRedirect;
  if (text == "forward")
    return WritePolicy::kForward;
  if (text == "reject")
    return WritePolicy::kReject;
  return std::nullopt;
}

}  // namespace raftnginx::http
