#include "nginx/gateway.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace raftnginx::nginx {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

Result<std::unique_ptr<Gateway>> Gateway::start(const std::string& binary, const GatewayConf& conf,
                                                std::function<void(std::string)> on_exit) {
  std::unique_ptr<Gateway> g(new Gateway(conf.prefix, std::move(on_exit)));
  std::error_code ec;
  for (const char* sub : {"logs", "temp"}) {
    fs::create_directories(fs::path(conf.prefix) / sub, ec);
    if (ec)
      return Status::io_error("cannot create " + conf.prefix + "/" + sub + ": " + ec.message());
  }
  if (Status s = g->write_conf(conf); !s.ok())
    return s;
  const std::string conf_path = conf.prefix + "/nginx.conf";
  const std::string error_log = conf.prefix + "/logs/error.log";
  // -e: nginx opens its compiled-in error log (/var/log/nginx) before reading the conf otherwise.
  std::vector<std::string> args = {binary, "-p", conf.prefix, "-c", conf_path, "-e", error_log};
  std::vector<char*> argv;
  for (std::string& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  // A pid file left by an nginx that was killed could name the pid the new one gets (a
  // container's pids repeat): only the new nginx may write the file start() waits for.
  const std::string pid_file = conf.prefix + "/nginx.pid";
  std::error_code gone;
  fs::remove(pid_file, gone);
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
  g->waiter_ = std::thread([raw = g.get()] { raw->wait_for_exit(); });
  // nginx writes its pid file after it installs its signal handlers: until then a reload's
  // SIGHUP would kill it. It exits instead on a bad conf or a taken port.
  const auto deadline = std::chrono::steady_clock::now() + kStartDeadline;
  std::unique_lock lock(g->mu_);
  while (!g->exited_cv_.wait_for(lock, 10ms, [&] { return g->exited_; })) {
    std::ifstream in(pid_file);
    pid_t written = -1;
    if (in >> written && written == pid) {
      g->started_ = true;
      return g;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      lock.unlock();
      g->stop(0ms);
      return Status::io_error("nginx did not start within " +
                              std::to_string(kStartDeadline.count()) + " s");
    }
  }
  return Status::io_error("nginx exited at start: " + g->error_log_tail());
}

Gateway::~Gateway() {
  stop(5s);
  if (waiter_.joinable())
    waiter_.join();
}

void Gateway::wait_for_exit() {
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  std::string why = WIFEXITED(status)
                        ? "nginx exited with status " + std::to_string(WEXITSTATUS(status))
                    : WIFSIGNALED(status)
                        ? std::string("nginx was killed by signal ") + strsignal(WTERMSIG(status))
                        : std::string("nginx exited");
  bool expected = false;
  {
    std::lock_guard lock(mu_);
    exited_ = true;
    expected = stopping_ || !started_;  // start() reports an exit before it returned
  }
  exited_cv_.notify_all();
  if (!expected && on_exit_)
    on_exit_(why + ": " + error_log_tail());
}

Status Gateway::write_conf(const GatewayConf& conf) {
  auto rendered = render_nginx_conf(conf);
  if (!rendered.ok())
    return rendered.status();
  const std::string path = prefix_ + "/nginx.conf";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << *rendered;
    if (!out)
      return Status::io_error("cannot write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    return Status::io_error("cannot rename " + tmp + ": " + ec.message());
  return Status();
}

Status Gateway::reload(const GatewayConf& conf) {
  std::lock_guard lock(mu_);
  if (exited_ || stopping_)
    return Status::unavailable("nginx is not running");
  if (Status s = write_conf(conf); !s.ok())
    return s;
  if (kill(pid_, SIGHUP) != 0)
    return Status::io_error(std::string("cannot signal nginx: ") + std::strerror(errno));
  return Status();
}

void Gateway::stop(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (pid_ <= 0 || exited_)
    return;
  if (!stopping_) {
    stopping_ = true;
    kill(pid_, SIGQUIT);
  }
  if (!exited_cv_.wait_for(lock, timeout, [this] { return exited_; })) {
    kill(pid_, SIGKILL);
    exited_cv_.wait(lock, [this] { return exited_; });
  }
}

size_t Gateway::accepting_workers() const {
  pid_t master = -1;
  {
    std::lock_guard lock(mu_);
    master = pid_;
  }
  size_t count = 0;
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    std::ifstream stat(it->path() / "stat");
    std::string line;
    std::getline(stat, line);
    // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
    const size_t close = line.rfind(')');
    if (close == std::string::npos)
      continue;
    std::istringstream rest(line.substr(close + 1));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != master)
      continue;
    std::ifstream cmdline(it->path() / "cmdline");
    std::string title;
    std::getline(cmdline, title, '\0');
    if (title.starts_with("nginx: worker process") &&
        title.find("shutting down") == std::string::npos)
      ++count;
  }
  return count;
}

std::string Gateway::error_log_tail() const {
  std::ifstream in(prefix_ + "/logs/error.log");
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty())
      last = line;
  }
  return last.empty() ? "(nothing in its error log)" : last;
}

}  // namespace raftnginx::nginx
