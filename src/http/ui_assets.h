// The status page's files (/ui/), compiled into the binary (cmake/embed.cmake): the page
// (src/http/ui/index.html, its script and style inline) and Chart.js from Debian's
// libjs-chart.js. No CDN and no file on disk: the page works on an offline edge box.
#pragma once

#include <string_view>

namespace raftnginx::http::ui {

extern const std::string_view index_html;
extern const std::string_view chart_js;

}  // namespace raftnginx::http::ui
