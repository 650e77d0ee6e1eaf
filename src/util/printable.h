// printable(): text from a peer, made safe to log. Threads: pure function.
#pragma once

#include <string>
#include <string_view>

namespace raftnginx {

// `text` with every byte outside printable ASCII, and the backslash, written as \xNN, cut after
// `max` bytes of input ("..." then marks the cut): a peer's string can neither start a forged log
// line nor flood one.
std::string printable(std::string_view text, size_t max);

}  // namespace raftnginx
