// Durations as Go and hraftd write them: "500ms", "2s", "1.5s", "1m", "1h", "0".
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "raftnginx/status.h"

namespace raftnginx {

// The longest duration any option or query parameter takes: longer ones are refused rather than
// overflowing the conversion to milliseconds.
inline constexpr std::chrono::milliseconds kMaxDuration = std::chrono::hours(24 * 366);

// Parses `text`; InvalidArgument if it is not a duration or exceeds `max`.
Result<std::chrono::milliseconds> parse_duration(std::string_view text,
                                                 std::chrono::milliseconds max = kMaxDuration);

// The shortest exact spelling parse_duration reads back: "500ms", "5s", "2m", "1h", "0".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace raftnginx
