#include "nginx/gateway.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace raftnginx::nginx {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

Result<std::unique_ptr<Gateway>> Gateway::start(const std::string& binary, GatewayConf conf) {
  std::sort(conf.members.begin(), conf.members.end());
  std::unique_ptr<Gateway> g(new Gateway(binary, std::move(conf)));
  std::error_code ec;
  for (const char* sub : {"logs", "temp"}) {
    fs::create_directories(fs::path(g->conf_.prefix) / sub, ec);
    if (ec)
      return Status::io_error("cannot create " + g->conf_.prefix + "/" + sub + ": " + ec.message());
  }
  if (Status s = g->write_conf(); !s.ok())
    return s;
  const std::string conf_path = g->conf_.prefix + "/nginx.conf";
  const std::string error_log = g->conf_.prefix + "/logs/error.log";
  // -e: nginx opens its compiled-in error log (/var/log/nginx) before reading the conf otherwise.
  std::vector<std::string> args = {binary, "-p", g->conf_.prefix, "-c", conf_path, "-e", error_log};
  std::vector<char*> argv;
  for (std::string& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0)
    return Status::io_error(std::string("cannot fork nginx: ") + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls until exec. If the daemon dies, even by kill -9, nginx gets
    // SIGTERM (fast shutdown: requests in flight have lost their backend anyway) and lets go of
    // its port at once, so that a restarted daemon can start it again.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
      _exit(1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);  // the daemon blocks SIGTERM/SIGINT in its threads
    // Nothing of the daemon's may leak into nginx: its listening sockets would stay bound
    // while nginx runs, and a restarted daemon could not listen again.
    if (close_range(3, ~0U, 0) != 0) {
      for (int fd = 3; fd < 65536; ++fd)
        close(fd);
    }
    execvp(argv[0], argv.data());
    _exit(127);
  }
  g->pid_ = pid;
  // nginx fails fast on a bad conf or a taken port; give it a moment to do so.
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(50ms);
    if (!g->running()) {
      return Status::io_error("nginx exited at start: " + g->error_log_tail());
    }
  }
  return g;
}

Gateway::~Gateway() {
  stop(5s);
}

Status Gateway::write_conf() {
  const std::string path = conf_.prefix + "/nginx.conf";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << render_nginx_conf(conf_);
    if (!out)
      return Status::io_error("cannot write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    return Status::io_error("cannot rename " + tmp + ": " + ec.message());
  return Status();
}

Status Gateway::update(std::vector<std::string> members, const std::string& leader) {
  std::sort(members.begin(), members.end());
  std::lock_guard lock(mu_);
  const bool new_leader = !leader.empty() && leader != conf_.leader;
  if ((members == conf_.members && !new_leader) || pid_ <= 0)
    return Status();
  conf_.members = std::move(members);
  if (new_leader)
    conf_.leader = leader;
  ++conf_.generation;
  if (Status s = write_conf(); !s.ok())
    return s;
  if (kill(pid_, SIGHUP) != 0)
    return Status::io_error(std::string("cannot signal nginx: ") + std::strerror(errno));
  return Status();
}

uint64_t Gateway::generation() {
  std::lock_guard lock(mu_);
  return conf_.generation;
}

void Gateway::confirm(uint64_t generation) {
  std::lock_guard lock(mu_);
  confirmed_ = std::max(confirmed_, generation);
}

bool Gateway::serves(std::vector<std::string> members) {
  std::sort(members.begin(), members.end());
  std::lock_guard lock(mu_);
  return confirmed_ == conf_.generation && members == conf_.members;
}

std::string Gateway::probe_address() const {
  return local_address(conf_.listen);
}

bool Gateway::running() {
  std::lock_guard lock(mu_);
  if (pid_ <= 0)
    return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

void Gateway::stop(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  if (pid_ <= 0)
    return;
  kill(pid_, SIGQUIT);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  pid_ = -1;
}

std::string Gateway::error_log_tail() const {
  std::ifstream in(conf_.prefix + "/logs/error.log");
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty())
      last = line;
  }
  return last.empty() ? "(nothing in its error log)" : last;
}

}  // namespace raftnginx::nginx
