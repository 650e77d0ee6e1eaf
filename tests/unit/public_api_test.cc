// The public API's checks of what a program hands it (include/raftnginx): routes a backend mounts
// and the hooks a program registers. Both come from code outside this tree, so each mistake must
// be an error that names it, never a crash or a route that silently shadows the daemon's.
#include <gtest/gtest.h>

#include "cli/options.h"
#include "http/api.h"

namespace raftnginx {
namespace {

Route route(std::string method, std::string path) {
  return Route{std::move(method), std::move(path), Access::kPrincipal,
               [](std::shared_ptr<Exchange>) {}};
}

TEST(PublicApi, RoutesABackendMayMount) {
  EXPECT_TRUE(http::Api::check_routes({}).ok());
  EXPECT_TRUE(http::Api::check_routes(
                  {route("POST", "/key"), route("GET", "/key/{key}"), route("PUT", "/key/{key}"),
                   route("GET", "/audit"), route("GET", "/statusx"), route("GET", "/status/{x}"),
                   route("GET", "/a/"), route("GET", "/a/{x}"), route("GET", "/_raftnginx")})
                  .ok());
}

TEST(PublicApi, RoutesThatAreRefusedWithTheirName) {
  const std::vector<std::pair<Route, std::string>> cases = {
      {route("GET", "audit"), "must begin with '/'"},
      {route("GET", ""), "must begin with '/'"},
      {route("GET", "/a b"), "cannot hold"},
      {route("GET", "/a?b"), "cannot hold"},
      {route("GET", "/a%20"), "cannot hold"},
      {route("GET", "/a\x7f"), "cannot hold"},
      {route("GET", "/{a}/b"), "only its end"},
      {route("GET", "/a/{}"), "only its end"},
      {route("GET", "/a/{b}{c}"), "only its end"},
      {route("GET", "/a/{b/c}"), "only its end"},
      {route("GET", "/a}"), "only its end"},
      {route("get", "/a"), "upper-case"},
      {route("", "/a"), "upper-case"},
      {route("GET", "/status"), "the daemon's /status"},
      {route("POST", "/join"), "the daemon's /join"},
      {route("GET", "/{anything}"), "the daemon's"},
      {route("GET", "/lead{er}"), "the daemon's /leader/transfer"},
      {route("GET", "/_raftnginx/generation"), "the daemon's /_raftnginx/"},
      {route("GET", "/_raftnginx/{x}"), "the daemon's /_raftnginx/"},
      {route("GET", "/_raft{x}"), "the daemon's /_raftnginx/"},
      {Route{"GET", "/a", Access::kPrincipal, nullptr}, "no handler"},
  };
  for (const auto& [r, why] : cases) {
    Status s = http::Api::check_routes({r});
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << r.path;
    EXPECT_NE(s.message().find(why), std::string::npos) << r.path << ": " << s.message();
  }
  Status twice = http::Api::check_routes({route("GET", "/a/{x}"), route("GET", "/a/{y}")});
  EXPECT_NE(twice.message().find("mounted twice"), std::string::npos) << twice.message();
}

DaemonHooks hooks_with(std::vector<std::string> backends, std::vector<std::string> flags) {
  DaemonHooks hooks;
  for (auto& name : backends) {
    hooks.backends.push_back(
        {name, "", [](const BackendContext&) -> Result<Backend> { return Backend{}; }});
  }
  for (auto& name : flags)
    hooks.flags.push_back({name, "", "", nullptr});
  return hooks;
}

TEST(PublicApi, HooksAreChecked) {
  EXPECT_TRUE(cli::check_hooks(hooks_with({"mine", "other-2"}, {"--my-flag"})).ok());
  const std::vector<std::pair<DaemonHooks, std::string>> cases = {
      {hooks_with({}, {}), "no backend"},
      {hooks_with({"Mine"}, {}), "backend 'Mine'"},
      {hooks_with({"a b"}, {}), "backend 'a b'"},
      {hooks_with({""}, {}), "backend ''"},
      {hooks_with({"mine", "mine"}, {}), "registered twice"},
      {hooks_with({"mine"}, {"-x"}), "flag '-x'"},
      {hooks_with({"mine"}, {"--"}), "flag '--'"},
      {hooks_with({"mine"}, {"--a=b"}), "flag '--a=b'"},
      {hooks_with({"mine"}, {"--a", "--a"}), "registered twice"},
  };
  for (const auto& [hooks, why] : cases) {
    Status s = cli::check_hooks(hooks);
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << why;
    EXPECT_NE(s.message().find(why), std::string::npos) << s.message();
  }
  DaemonHooks no_open = hooks_with({"mine"}, {});
  no_open.backends[0].open = nullptr;
  EXPECT_FALSE(cli::check_hooks(no_open).ok());
  for (const char* program : {"", "My Daemon", "a/b"}) {
    DaemonHooks named = hooks_with({"mine"}, {});
    named.program = program;
    EXPECT_EQ(cli::check_hooks(named).code(), Status::Code::kInvalidArgument) << program;
  }
  // A flag's default goes through its check; a check that throws refuses.
  DaemonHooks bad_default = hooks_with({"mine"}, {"--size"});
  bad_default.flags[0].default_value = "big";
  bad_default.flags[0].check = [](const std::string& v) {
    return v == "big" ? Status::invalid_argument("not a size") : Status();
  };
  EXPECT_NE(cli::check_hooks(bad_default).message().find("its default 'big'"), std::string::npos);
  bad_default.flags[0].check = [](const std::string&) -> Status {
    throw std::runtime_error("oops");
  };
  EXPECT_NE(cli::check_hooks(bad_default).message().find("threw: oops"), std::string::npos);
}

// A program's flag that is one of the daemon's own: a usage error (exit 2), not an exception.
TEST(PublicApi, AFlagTheDaemonHasIsAUsageError) {
  for (const char* taken : {"--fsm", "--config", "--version"}) {
    DaemonHooks hooks = hooks_with({"mine"}, {taken});
    ASSERT_TRUE(cli::check_hooks(hooks).ok());
    std::vector<std::string> args = {"prog", "/tmp/unused"};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    cli::ParsedOptions parsed =
        cli::parse_options(static_cast<int>(argv.size()), argv.data(), hooks);
    EXPECT_FALSE(parsed.options.has_value()) << taken;
    EXPECT_EQ(parsed.exit_code, 2) << taken;
  }
}

}  // namespace
}  // namespace raftnginx
