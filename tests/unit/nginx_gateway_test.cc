// The nginx process the daemon runs: start, reload and stop against Debian's real nginx.
#include "nginx/gateway.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "temp_dir.h"
#include "util/defaults.h"

namespace raftnginx::nginx {
namespace {

using namespace std::chrono_literals;

uint16_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// The body of GET kGenerationPath, or "" if the gateway does not answer.
std::string served_generation(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request =
        std::string("GET ") + kGenerationPath + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;)
        answer.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  const size_t body = answer.find("\r\n\r\n");
  return body == std::string::npos ? "" : answer.substr(body + 4);
}

bool wait_for(const std::function<bool()>& condition) {
  for (auto deadline = std::chrono::steady_clock::now() + 20s;
       std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(10ms)) {
    if (condition())
      return true;
  }
  return false;
}

GatewayConf test_conf(const std::string& dir, uint16_t port) {
  GatewayConf conf;
  conf.node_name = "n1";
  conf.prefix = dir + "/nginx";
  conf.listen = "127.0.0.1:" + std::to_string(port);
  conf.local_daemon = "127.0.0.1:" + std::to_string(free_port());
  conf.run_as_root = geteuid() == 0;
  return conf;
}

TEST(GatewayTest, ReloadsAreServedAndNginxKeepsRunning) {
  testing::TempDir dir;
  const uint16_t port = free_port();
  GatewayConf conf = test_conf(dir.path(), port);
  std::atomic<bool> exited{false};
  auto gateway = Gateway::start(std::string(defaults::kNginxBinary), conf,
                                [&](std::string) { exited = true; });
  ASSERT_TRUE(gateway.ok()) << gateway.status().message();
  for (uint64_t generation = 2; generation <= 4; ++generation) {
    conf.generation = generation;
    ASSERT_TRUE((*gateway)->reload(conf).ok());
    EXPECT_TRUE(wait_for([&] { return served_generation(port) == std::to_string(generation); }))
        << (*gateway)->error_log_tail();
  }
  (*gateway)->stop(5s);
  EXPECT_FALSE(exited) << (*gateway)->error_log_tail();
}

// nginx takes SIGHUP as "reload" only once it has installed its handlers; before that SIGHUP
// kills it (seen in CI on a loaded machine, right after a start). This stand-in is that slow on
// purpose: it installs its handler and writes its pid file (as nginx does, in that order) after
// 700 ms, so a reload sent the moment start() returns must still find it running.
TEST(GatewayTest, StartReturnsOnlyOnceNginxTakesSignals) {
  testing::TempDir dir;
  const std::string slow = dir.sub("slow-nginx");
  {
    std::ofstream script(slow);
    script << "#!/bin/sh\n"
              "sleep 0.7\n"
              "trap 'echo reload >> \"$2/reloads\"' HUP\n"
              "echo $$ > \"$2/nginx.pid\"\n"
              "while :; do sleep 0.05; done\n";
  }
  std::filesystem::permissions(slow, std::filesystem::perms::owner_all);
  GatewayConf conf = test_conf(dir.path(), free_port());
  // A pid file an nginx killed before left behind: not the new one's.
  std::filesystem::create_directories(conf.prefix);
  std::ofstream(conf.prefix + "/nginx.pid") << getpid() << "\n";
  std::atomic<bool> exited{false};
  auto gateway = Gateway::start(slow, conf, [&](std::string) { exited = true; });
  ASSERT_TRUE(gateway.ok()) << gateway.status().message();
  ASSERT_TRUE((*gateway)->reload(conf).ok());
  EXPECT_TRUE(wait_for([&] { return std::filesystem::exists(conf.prefix + "/reloads"); }));
  EXPECT_FALSE(exited);
  (*gateway)->stop(1s);
}

TEST(GatewayTest, ANginxThatCannotStartFailsTheStartWithNginxsReason) {
  testing::TempDir dir;
  const uint16_t port = free_port();
  const GatewayConf conf = test_conf(dir.path(), port);
  // Another socket holds the port: nginx cannot bind it and exits.
  const int holder = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(holder, 1), 0);
  // The caller hears of it from start() alone: an exit it did not ask for is reported only
  // once nginx ran.
  std::atomic<bool> reported{false};
  auto gateway = Gateway::start(std::string(defaults::kNginxBinary), conf,
                                [&](std::string) { reported = true; });
  close(holder);
  ASSERT_FALSE(gateway.ok());
  EXPECT_FALSE(reported);
  EXPECT_NE(gateway.status().message().find("could not bind"), std::string::npos)
      << gateway.status().message();
}

}  // namespace
}  // namespace raftnginx::nginx
