#include "util/duration.h"

#include <charconv>
#include <cmath>

namespace raftnginx {

Result<std::chrono::milliseconds> parse_duration(std::string_view text,
                                                 std::chrono::milliseconds max) {
  const auto bad = [&](std::string_view why) {
    std::string message = "'";
    message.append(text).append("' ").append(why);
    return Status::invalid_argument(message);
  };
  if (text == "0")
    return std::chrono::milliseconds(0);
  double number = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc() || !std::isfinite(number) || number < 0)
    return bad("is not a duration (examples: 500ms, 2s, 1m)");
  const std::string_view unit(end, text.data() + text.size() - end);
  double ms_per_unit = 0;
  if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "m") {
    ms_per_unit = 60'000;
  } else if (unit == "h") {
    ms_per_unit = 3'600'000;
  } else {
    return bad("is not a duration (examples: 500ms, 2s, 1m)");
  }
  const double ms = number * ms_per_unit;
  if (ms > static_cast<double>(max.count()))
    return bad("is longer than the limit of " + format_duration(max));
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

std::string format_duration(std::chrono::milliseconds d) {
  const int64_t ms = d.count();
  if (ms == 0)
    return "0";
  for (const auto& [unit, scale] :
       {std::pair<const char*, int64_t>{"h", 3'600'000}, {"m", 60'000}, {"s", 1000}}) {
    if (ms % scale == 0)
      return std::to_string(ms / scale) + unit;
  }
  return std::to_string(ms) + "ms";
}

}  // namespace raftnginx
