// A backend's routes mounted in the daemon's API (http/api.h over include/raftnginx/routes.h),
// driven without a network: which route a path reaches, and what the Exchange does for a route
// that answers wrongly, late or never, throws, or ignores a refused permission.
#include <gtest/gtest.h>

#include <fstream>

#include "fsm/kv_command.h"
#include "fsm/memory_kv.h"
#include "http/auth.h"
#include "kv_commands.h"
#include "one_node_api.h"
#include "temp_dir.h"

namespace raftnginx {
namespace {

// The API over a one-node cluster with `routes` mounted, in a directory of its own.
class Daemon {
 public:
  explicit Daemon(std::vector<Route> routes, std::shared_ptr<http::AuthTable> auth = nullptr)
      : api_(dir_.path(), std::make_unique<fsm::MemoryKv>(), std::move(routes),
             options(std::move(auth))) {}

  http::Response call(std::string method, std::string target, std::string body = {},
                      http::Headers headers = {}) {
    return api_.call(std::move(method), std::move(target), std::move(body), std::move(headers));
  }

  http::Api& api() { return api_.api(); }
  node::Node& node() { return api_.node(); }

 private:
  static http::ApiOptions options(std::shared_ptr<http::AuthTable> auth) {
    http::ApiOptions o;
    o.self_name = "n1";
    o.auth = std::move(auth);
    return o;
  }

  testing::TempDir dir_;
  testing::OneNodeApi api_;
};

// A route that answers with its own name and what its {name} matched.
Route named(std::string method, std::string path, std::string name,
            Access access = Access::kPrincipal) {
  return Route{std::move(method), std::move(path), access, [name](std::shared_ptr<Exchange> ex) {
                 ex->respond(http::Response::error(200, name + ":" + ex->path_tail()));
               }};
}

TEST(ApiRoutes, TheMostSpecificPathTakesTheMethod) {
  Daemon d({named("POST", "/f/upload", "upload"), named("GET", "/f/{n}", "file"),
            named("GET", "/a/{x}", "short"), named("GET", "/a/b/{y}", "long"),
            named("GET", "/a/", "exact")});
  EXPECT_EQ(d.call("GET", "/f/upload").body, R"({"error":"file:upload"})");
  EXPECT_EQ(d.call("POST", "/f/upload").body, R"({"error":"upload:"})");
  EXPECT_EQ(d.call("GET", "/a/b/c").body, R"({"error":"long:c"})");
  EXPECT_EQ(d.call("GET", "/a/bc").body, R"({"error":"short:bc"})");
  EXPECT_EQ(d.call("GET", "/a/").body, R"({"error":"exact:"})");
  // Percent-decoded before matching: the tail is the decoded rest.
  EXPECT_EQ(d.call("GET", "/a/b/%2F..%2Fx").body, R"({"error":"long:/../x"})");
  http::Response r = d.call("DELETE", "/f/upload");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("Allow"), "POST, GET");
  EXPECT_EQ(d.call("GET", "/nowhere").status, 404);
  EXPECT_EQ(d.call("GET", "/status").status, 200);  // the daemon's own are still there
}

TEST(ApiRoutes, ARouteThatThrowsOrNeverAnswersIsAnswered500) {
  Daemon d({Route{"GET", "/throws", Access::kPrincipal,
                  [](std::shared_ptr<Exchange>) { throw std::runtime_error("boom"); }},
            Route{"GET", "/silent", Access::kPrincipal, [](std::shared_ptr<Exchange>) {}},
            Route{"GET", "/read-throws", Access::kPrincipal, [](std::shared_ptr<Exchange> ex) {
                    ex->read([]() -> http::Response { throw std::runtime_error("bad read"); });
                  }}});
  http::Response r = d.call("GET", "/throws");
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("boom"), std::string::npos) << r.body;
  EXPECT_EQ(d.call("GET", "/silent").status, 500);
  r = d.call("GET", "/read-throws");
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("bad read"), std::string::npos) << r.body;
  EXPECT_EQ(d.call("GET", "/healthz").status, 200);  // and the daemon goes on
}

TEST(ApiRoutes, OnlyConfigOrAdminMayWriteTheGatewayFiles) {
  auto principals = http::AuthTable::parse(
      R"([{"name": "all", "read": [""], "write": [""]},
          {"name": "deployer", "write": ["app/"], "config": true},
          {"name": "ops", "admin": true}])");
  ASSERT_TRUE(principals.ok()) << principals.status().to_string();
  const http::Principal& all = principals->at(0);
  const http::Principal& deployer = principals->at(1);
  const http::Principal& ops = principals->at(2);
  // A write prefix, even the widest, does not reach nginx/.
  EXPECT_TRUE(all.may_write("app/x"));
  EXPECT_FALSE(all.may_write("nginx/http/a.conf"));
  EXPECT_FALSE(all.may_write("nginx/"));
  EXPECT_TRUE(all.may_write("nginxish/key"));
  EXPECT_TRUE(deployer.may_write("nginx/http/a.conf"));
  EXPECT_FALSE(deployer.may_write("other/x"));
  EXPECT_TRUE(ops.may_write("nginx/maps/m.map"));
  EXPECT_FALSE(http::AuthTable::parse(R"([{"name": "x", "config": "yes"}])").ok());
}

TEST(ApiRoutes, AWriteAfterARefusedPermissionProposesNothing) {
  testing::TempDir dir;
  const std::string path = dir.sub("auth.json");
  std::ofstream(path) << R"([{"name": "w", "token_sha256": ")" << http::sha256_hex("t")
                      << R"(", "read": [""], "write": ["mine/"]}])";
  auto auth = http::AuthTable::load(path);
  ASSERT_TRUE(auth.ok()) << auth.status().to_string();
  const std::string command = raftnginx::testing::set_cmd("theirs/k", "v");
  Daemon d({Route{"POST", "/careless", Access::kPrincipal,
                  [command](std::shared_ptr<Exchange> ex) {
                    (void)ex->may_write("theirs/k");  // refused: answers 403, and is ignored
                    ex->write(command, [](const Outcome&) { return http::Response{}; });
                  }},
            Route{"POST", "/hook", Access::kAnyone,
                  [](std::shared_ptr<Exchange> ex) {
                    ex->respond(http::Response::error(202, ex->request().body));
                  }}},
           std::move(auth).value());
  const raft::Index before = d.node().applied_index();
  http::Response r = d.call("POST", "/careless", "", {{"Authorization", "Bearer t"}});
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, R"({"error":"w may not write theirs/k"})");
  EXPECT_EQ(d.call("POST", "/careless").status, 401);
  // Nothing was proposed: a write through the log would have moved the applied index.
  EXPECT_EQ(d.node().applied_index(), before);

  // A route open to anyone takes a stranger's body; the others do not even read it.
  http::Request head;
  head.method = "POST";
  head.target = "/hook";
  EXPECT_FALSE(d.api().screen(head).has_value());
  head.target = "/careless";
  ASSERT_TRUE(d.api().screen(head).has_value());
  EXPECT_EQ(d.api().screen(head)->status, 401);
  EXPECT_EQ(d.call("POST", "/hook", "ping").status, 202);
}

}  // namespace
}  // namespace raftnginx
