// The status page (/ui/): its files, compiled in (ui_assets.h), and the history it charts
// (history.h). The page itself holds no data: it reads /status, /nodes and /ui/history with the
// viewer's credentials, so that it may be served to anyone.
#include <nlohmann/json.hpp>

#include "http/api.h"
#include "http/ui_assets.h"

namespace raftnginx::http {
namespace {

Response asset(std::string_view body, const char* type) {
  Response r;
  r.headers.emplace_back("Content-Type", type);
  r.headers.emplace_back("Cache-Control", "no-cache");
  // Nothing but its own files and its own member's API: no inline frames, no other origins.
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                         "style-src 'unsafe-inline'; frame-ancestors 'none'");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.body = std::string(body);
  return r;
}

}  // namespace

void Api::ui_redirect(const CallPtr& call) {
  Response r;
  r.status = 301;
  r.headers.emplace_back("Location", "/ui/");
  call->answer(std::move(r));
}

void Api::ui_page(const CallPtr& call) {
  call->answer(asset(ui::index_html, "text/html; charset=utf-8"));
}

void Api::ui_chart(const CallPtr& call) {
  call->answer(asset(ui::chart_js, "text/javascript; charset=utf-8"));
}

void Api::ui_history(const CallPtr& call) {
  call->answer(Response::json(200, history_->to_json()));
}

}  // namespace raftnginx::http
