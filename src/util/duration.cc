#include "util/duration.h"

#include <charconv>
#include <string>

namespace raftnginx {

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  const auto bad = [&] {
    // Appended piece by piece: GCC 12 at -O3 warns falsely (-Wrestrict) on "literal" + string.
    std::string message = "'";
    message.append(text).append("' is not a duration (examples: 500ms, 2s, 1m)");
    return Status::invalid_argument(message);
  };
  if (text == "0")
    return std::chrono::milliseconds(0);
  double number = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc() || number < 0)
    return bad();
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
    return bad();
  }
  return std::chrono::milliseconds(static_cast<int64_t>(number * ms_per_unit));
}

}  // namespace raftnginx
