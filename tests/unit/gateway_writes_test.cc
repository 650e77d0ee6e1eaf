// Writes to the gateways' files (kv/gateway_files.h) through the key-value routes of a one-node
// cluster: checked before they are proposed, guarded by the revision they were checked against,
// answered once on a retry, and never locked out by files that are refused already.
#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "fsm/kv_command.h"
#include "fsm/memory_kv.h"
#include "kv/gateway_files.h"
#include "kv/kv_routes.h"
#include "kv/watch_hub.h"
#include "one_node_api.h"
#include "temp_dir.h"

namespace raftnginx::kv {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// Stands for the node's nginx: refuses a file that says "broken", and one that says "needs P;"
// while no file P is there.
class FakeCheck : public GatewayCheck {
 public:
  Status check(const GatewayFiles& candidate) const override {
    for (const auto& [path, content] : candidate.files) {
      if (content.find("broken") != std::string::npos)
        return Status::invalid_argument("[emerg] unknown directive \"broken\" in " + path + ":1");
      if (content.starts_with("needs ") &&
          !candidate.files.contains(content.substr(6, content.size() - 7)))
        return Status::invalid_argument("[emerg] " + content + " in " + path + ":1");
    }
    return Status();
  }
};

fsm::KvCommand put(std::string key, std::string value) {
  fsm::KvCommand cmd;
  cmd.success.push_back(fsm::KvOp{fsm::KvOp::Kind::kPut, std::move(key), std::move(value), 0});
  return cmd;
}

class GatewayWritesTest : public ::testing::Test {
 protected:
  GatewayWritesTest() {
    auto store = std::make_unique<fsm::MemoryKv>();
    kv_ = store.get();
    hub_ = WatchHub::start(kv_, {});
    kv_->set_observer(hub_.get());
    writes_ = std::make_shared<GatewayWrites>(kv_, check_);
    http::ApiOptions options;
    options.self_name = "n1";
    std::vector<Route> routes = kv_routes(kv_, hub_, 1s, writes_);
    // What a deposed leader proposes: a write checked against the files of revision 0.
    routes.push_back(Route{"POST", "/stale-write", Access::kPrincipal, [](ExchangePtr ex) {
                             ex->write(fsm::encode_kv_command(guard_gateway_write(
                                           put("nginx/http/stale.conf", "s;"), 0)),
                                       [](const Outcome&) { return http::Response{}; });
                           }});
    api_ = std::make_unique<testing::OneNodeApi>(dir_.path(), std::move(store), std::move(routes),
                                                 options);
  }
  ~GatewayWritesTest() override {
    writes_->stop();
    api_.reset();
  }

  http::Response call(std::string method, std::string target, std::string body = {},
                      http::Headers headers = {}) {
    return api_->call(std::move(method), std::move(target), std::move(body), std::move(headers));
  }
  // Proposes `cmd` as it is, as a deposed leader or an older release would have.
  Result<Outcome> propose(const fsm::KvCommand& cmd) {
    std::promise<Result<Outcome>> done;
    api_->node().propose(fsm::encode_kv_command(cmd), "",
                         [&](Result<Outcome> r) { done.set_value(std::move(r)); });
    return done.get_future().get();
  }
  std::optional<fsm::KvRecord> record(std::string_view key) { return kv_->get(key).value(); }

  testing::TempDir dir_;
  std::shared_ptr<FakeCheck> check_ = std::make_shared<FakeCheck>();
  fsm::KvStore* kv_ = nullptr;
  std::shared_ptr<WatchHub> hub_;
  std::shared_ptr<GatewayWrites> writes_;
  std::unique_ptr<testing::OneNodeApi> api_;
};

TEST_F(GatewayWritesTest, EachCheckedWriteMovesTheRevisionItIsGuardedBy) {
  http::Response r = call("PUT", "/key/nginx/http/a.conf", "upstream a { server 10.0.0.1; }");
  ASSERT_EQ(r.status, 200) << r.body;
  const raft::Index first = std::stoull(std::string(r.header("X-Raft-Mod-Index")));
  auto checked = record(kGatewayCheckedKey);
  ASSERT_TRUE(checked);
  EXPECT_EQ(checked->mod_index, first);
  r = call("PUT", "/key/nginx/http/b.conf", "upstream b { server 10.0.0.2; }");
  ASSERT_EQ(r.status, 200) << r.body;
  checked = record(kGatewayCheckedKey);
  EXPECT_EQ(checked->mod_index, std::stoull(std::string(r.header("X-Raft-Mod-Index"))));
  EXPECT_GT(checked->mod_index, first);
  // Not a file: no client writes it.
  EXPECT_EQ(call("PUT", "/key/nginx/.checked", "0 -").status, 400);
}

TEST_F(GatewayWritesTest, AWriteCheckedAgainstFilesThatChangedSinceIsRefusedWhole) {
  // Two leaders checked a write each against the same files (revision 0); one commits first.
  ASSERT_EQ(call("PUT", "/key/nginx/http/a.conf", "a;").status, 200);
  const http::Headers key = {{"Idempotency-Key", "stale-1"}};
  http::Response r = call("POST", "/stale-write", "", key);
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("nothing was applied"), std::string::npos) << r.body;
  EXPECT_FALSE(record("nginx/http/stale.conf"));
  // The answer for that request id stays what it was.
  EXPECT_EQ(call("POST", "/stale-write", "", key).status, 409);
  // The same, guarded by the revision that is current, goes through.
  const raft::Index now = record(kGatewayCheckedKey)->mod_index;
  auto outcome = propose(guard_gateway_write(put("nginx/http/b.conf", "b;"), now));
  ASSERT_TRUE(outcome.ok());
  EXPECT_TRUE(outcome->result.status.ok()) << outcome->result.status.to_string();
  EXPECT_TRUE(record("nginx/http/b.conf"));
}

TEST_F(GatewayWritesTest, ARetryWithTheSameKeyIsAnsweredOnceWhateverCameBetween) {
  const http::Headers key = {{"Idempotency-Key", "deploy-42"}};
  http::Response first = call("PUT", "/key/nginx/http/a.conf", "a;", key);
  ASSERT_EQ(first.status, 200) << first.body;
  // The answer was lost, and another write changed the files; the client sends the same request
  // again. It is checked against newer files, but it is the same request: answered once.
  ASSERT_EQ(call("PUT", "/key/nginx/http/b.conf", "b;").status, 200);
  http::Response again = call("PUT", "/key/nginx/http/a.conf", "a;", key);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.header("X-Raft-Mod-Index"), first.header("X-Raft-Mod-Index"));
  EXPECT_EQ(record("nginx/http/a.conf")->version, 1u);
  // The same key for another request is refused, as for any write.
  EXPECT_EQ(call("PUT", "/key/nginx/http/a.conf", "other;", key).status, 422);
  EXPECT_EQ(record("nginx/http/a.conf")->value, "a;");
}

TEST_F(GatewayWritesTest, NginxsRefusalProposesNothing) {
  const raft::Index before = api_->node().replica_status().commit_index;
  http::Response r = call("PUT", "/key/nginx/server/x.conf", "broken;");
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find("unknown directive"), std::string::npos) << r.body;
  EXPECT_EQ(api_->node().replica_status().commit_index, before);
  EXPECT_FALSE(record("nginx/server/x.conf"));
}

TEST_F(GatewayWritesTest, FilesNginxRefusesAlreadyCanBeDeletedOneBlamedFileAtATime) {
  // Files nginx no longer takes (written before an nginx upgrade, say).
  ASSERT_TRUE(propose(put("nginx/http/old.conf", "broken;")).ok());
  ASSERT_TRUE(propose(put("nginx/http/other.conf", "o;")).ok());
  ASSERT_EQ(call("PUT", "/key/nginx/http/keep.conf", "k;").status, 422);
  // Only this node's nginx says so, and it may be alone: a delete goes through though the
  // result is still refused only if it takes away the file nginx blames.
  EXPECT_EQ(call("DELETE", "/key/nginx/http/other.conf").status, 422);
  http::Response r = call("DELETE", "/key/nginx/http/old.conf");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(call("PUT", "/key/nginx/http/keep.conf", "k;").status, 200);
  // With good files, a delete is checked like any write.
  ASSERT_EQ(call("PUT", "/key/nginx/server/uses.conf", "needs http/keep.conf;").status, 200);
  EXPECT_EQ(call("DELETE", "/key/nginx/http/keep.conf").status, 422);
  EXPECT_TRUE(record("nginx/http/keep.conf"));
}

TEST_F(GatewayWritesTest, FilesTheGrammarRefusesLockOutNoDelete) {
  // A file the grammar refuses on every node (written by a release before it).
  ASSERT_TRUE(propose(put("nginx/server/evil.conf", "include /etc/passwd;")).ok());
  ASSERT_TRUE(propose(put("nginx/http/other.conf", "o;")).ok());
  http::Response r = call("PUT", "/key/nginx/http/keep.conf", "k;");
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find("the gateway files are refused"), std::string::npos) << r.body;
  EXPECT_EQ(call("DELETE", "/key/nginx/http/other.conf").status, 200);
  EXPECT_EQ(call("DELETE", "/key/nginx/server/evil.conf").status, 200);
  EXPECT_EQ(call("PUT", "/key/nginx/http/keep.conf", "k;").status, 200);
}

TEST_F(GatewayWritesTest, MoreKeysThanTheGatewaysTakeCanStillBeDeleted) {
  // Keys no gateway file has (an older release's), more than the listing takes.
  fsm::KvCommand junk;
  for (size_t i = 0; i < 2 * 1001 + 1; ++i)
    junk.success.push_back(
        fsm::KvOp{fsm::KvOp::Kind::kPut, "nginx/junk-" + std::to_string(i), "x", 0});
  ASSERT_TRUE(propose(junk).ok());
  http::Response r = call("PUT", "/key/nginx/http/a.conf", "a;");
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("more than the gateways take"), std::string::npos) << r.body;
  r = call("POST", "/txn", R"({"success": [{"op": "delete_prefix", "prefix": "nginx/"}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(call("PUT", "/key/nginx/http/a.conf", "a;").status, 200);
}

}  // namespace
}  // namespace raftnginx::kv
