// Durations as Go and hraftd write them: "500ms", "2s", "1.5s", "1m", "1h", "0".
#pragma once

#include <chrono>
#include <string_view>

#include "util/status.h"

namespace raftnginx {

Result<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace raftnginx
