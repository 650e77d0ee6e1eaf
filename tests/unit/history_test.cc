// The status page's history (http/history.h): per-second rates and latencies, quiet seconds,
// its window, and the events it keeps.
#include "http/history.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace raftnginx::http {
namespace {

using namespace std::chrono_literals;

struct Fixture {
  int64_t now_ms = 1'700'000'000'000;
  History history{[this] { return now_ms; }};
};

TEST(History, CountsEachSecondAndChartsTheClustersWrites) {
  Fixture f;
  f.history.note_applied(100);
  for (int i = 0; i < 98; ++i)
    f.history.record(false, 200, 100us);
  f.history.record(false, 200, 30ms);
  f.history.record(false, 200, 30ms);
  f.history.record(true, 200, 2ms);
  f.history.record(true, 503, 5ms);
  f.history.note_applied(140);
  EXPECT_TRUE(f.history.to_json()["seconds"].empty());  // the second is not over

  f.now_ms += 3000;  // two quiet seconds, and one under way
  f.history.note_applied(150);
  const nlohmann::json seconds = f.history.to_json()["seconds"];
  ASSERT_EQ(seconds.size(), 3u);
  const nlohmann::json& busy = seconds[0];
  EXPECT_EQ(busy["t"], 1'700'000'000);
  EXPECT_EQ(busy["reads"], 100);
  EXPECT_EQ(busy["writes"], 2);
  EXPECT_EQ(busy["errors"], 1);
  EXPECT_EQ(busy["applied"], 0);                        // nothing before it to count from
  EXPECT_LE(busy["read_p50_ms"].get<double>(), 0.128);  // buckets are powers of two µs
  EXPECT_GE(busy["read_p99_ms"].get<double>(), 30.0);
  EXPECT_LE(busy["read_p99_ms"].get<double>(), 65.6);
  EXPECT_EQ(seconds[1]["reads"], 0);
  EXPECT_EQ(seconds[1]["applied"], 0);  // quiet: the index stood at 140
  EXPECT_EQ(seconds[2]["t"], 1'700'000'002);

  f.now_ms += 1000;
  EXPECT_EQ(f.history.to_json()["seconds"].back()["applied"], 10);  // 140 to 150
}

TEST(History, KeepsTenMinutesHoweverLongTheQuiet) {
  Fixture f;
  f.history.record(false, 200, 1ms);
  f.now_ms += 24 * 3600 * 1000;  // a day without a request costs no more than the window
  auto seconds = f.history.to_json()["seconds"];
  EXPECT_EQ(seconds.size(), History::kSeconds);
  EXPECT_EQ(seconds.back()["t"], 1'700'000'000 + 24 * 3600 - 1);
}

// NTP steps the clock at boot: seconds stay in order, and what came meanwhile is counted.
TEST(History, AWallClockSteppedBackKeepsTheSecondsInOrder) {
  Fixture f;
  f.history.record(false, 200, 1ms);
  f.now_ms += 2000;
  f.history.record(false, 200, 1ms);
  f.now_ms -= 60'000;
  f.history.record(false, 200, 1ms);
  f.history.record(true, 200, 1ms);
  f.now_ms += 63'000;  // 5 s after the first request
  const nlohmann::json seconds = f.history.to_json()["seconds"];
  ASSERT_EQ(seconds.size(), 5u);
  for (size_t i = 1; i < seconds.size(); ++i)
    EXPECT_EQ(seconds[i]["t"].get<int64_t>(), seconds[i - 1]["t"].get<int64_t>() + 1);
  EXPECT_EQ(seconds[2]["reads"], 2);
  EXPECT_EQ(seconds[2]["writes"], 1);
}

TEST(History, ElectionsAndMembershipChangesBecomeEvents) {
  Fixture f;
  node::NodeStatus st;
  st.raft.leader = 7;  // known before its record: named once the record arrives
  st.raft.hard_state.term = 2;
  f.history.on_status(st);
  st.membership.conf.voters = {7, 8};
  st.membership.members[7] = cluster::Member{"node1", "", ""};
  st.membership.members[8] = cluster::Member{"node2", "", ""};
  f.history.on_status(st);
  f.history.on_status(st);  // nothing changed: no event
  st.raft.hard_state.term = 3;
  st.raft.leader = 8;
  f.history.on_status(st);
  const nlohmann::json events = f.history.to_json()["events"];
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["kind"], "leader");
  EXPECT_EQ(events[0]["leader"], "node1");
  EXPECT_EQ(events[1]["members"], nlohmann::json({"node1", "node2"}));
  EXPECT_EQ(events[2]["leader"], "node2");
  EXPECT_EQ(events[2]["term"], 3);
}

}  // namespace
}  // namespace raftnginx::http
