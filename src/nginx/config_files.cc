#include "nginx/config_files.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

namespace raftnginx::nginx {

namespace fs = std::filesystem;

namespace {

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

Status write_file(const fs::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (!out)
    return Status::io_error("cannot write " + path.string());
  return Status();
}

// Writes the files under `dir` (removed first); their paths were checked.
Status write_tree(const fs::path& dir, const GatewayFiles& files) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  for (const char* kind : {"http", "server", "maps"}) {
    fs::create_directories(dir / kind, ec);
    if (ec)
      return Status::io_error("cannot create " + (dir / kind).string() + ": " + ec.message());
  }
  for (const auto& [path, content] : files.files) {
    if (Status s = write_file(dir / path, content); !s.ok())
      return s;
  }
  return Status();
}

// Runs argv, its output (stdout and stderr) kept; killed after `timeout`.
struct Ran {
  int status = -1;
  std::string output;
  bool timed_out = false;
};
Result<Ran> run(std::vector<std::string> args, std::chrono::milliseconds timeout) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return Status::io_error(std::string("pipe: ") + std::strerror(errno));
  std::vector<char*> argv;
  for (std::string& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return Status::io_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec. Nothing of the daemon's leaks into nginx -t, and
    // it dies with the daemon.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close_range(3, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  Ran ran;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fds[0], POLLIN, 0};
    const int n = left.count() > 0 ? poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ran.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    const ssize_t got = read(fds[0], buf, sizeof(buf));
    if (got <= 0)
      break;
    if (ran.output.size() < 64 << 10)
      ran.output.append(buf, static_cast<size_t>(got));
  }
  close(fds[0]);
  while (waitpid(pid, &ran.status, 0) < 0 && errno == EINTR) {
  }
  return ran;
}

void replace_all(std::string* s, const std::string& from, const std::string& to) {
  for (size_t at = 0; (at = s->find(from, at)) != std::string::npos; at += to.size())
    s->replace(at, from.size(), to);
}

// nginx's complaint, its paths made the names users know: "in http/a.conf:3".
std::string complaint(std::string output, const fs::path& dir) {
  replace_all(&output, (dir / "cluster").string() + "/", "");
  replace_all(&output, (dir / "nginx.conf").string(), "the gateway's nginx.conf");
  std::string out;
  size_t start = 0;
  for (size_t end; start < output.size(); start = end + 1) {
    end = output.find('\n', start);
    if (end == std::string::npos)
      end = output.size();
    std::string_view line(output.data() + start, end - start);
    if (line.find("[emerg]") == std::string_view::npos &&
        line.find("[alert]") == std::string_view::npos &&
        line.find("[crit]") == std::string_view::npos)
      continue;
    if (line.starts_with("nginx: "))
      line.remove_prefix(7);
    out += (out.empty() ? "" : "; ") + std::string(line);
  }
  return out.empty() ? "nginx refused the configuration" : out;
}

// nginx's tokens: words and the separators ';', '{', '}', read as ngx_conf_read_token reads
// them, so that what the filter sees is what nginx will: '#' and quotes are special only where
// a token starts, '}' only there too, "${" goes on with the word, and a backslash unescapes
// \" \' \\ \t \r \n (any other pair is kept whole).
struct Token {
  std::string text;
  bool separator = false;
};

bool blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// The word's text as nginx copies it.
std::string unescaped(std::string_view raw) {
  std::string out;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\\' && i + 1 < raw.size()) {
      const char next = raw[i + 1];
      if (next == '"' || next == '\'' || next == '\\') {
        out += next;
        ++i;
        continue;
      }
      if (next == 't' || next == 'r' || next == 'n') {
        out += next == 't' ? '\t' : next == 'r' ? '\r' : '\n';
        ++i;
        continue;
      }
    }
    out += raw[i];
  }
  return out;
}

Result<std::vector<Token>> tokenize(std::string_view text) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (blank(c)) {
      ++i;
      continue;
    }
    if (c == '#') {
      while (i < text.size() && text[i] != '\n')
        ++i;
      continue;
    }
    if (c == ';' || c == '{' || c == '}') {
      out.push_back(Token{std::string(1, c), true});
      ++i;
      continue;
    }
    size_t start = i;
    if (c == '"' || c == '\'') {
      // A quoted word: up to the same quote, unescaped; then a blank, ';', '{' or ')'.
      size_t j = i + 1;
      for (; j < text.size() && text[j] != c; ++j) {
        if (text[j] == '\\')
          ++j;
      }
      if (j >= text.size())
        return Status::invalid_argument("an unterminated quoted string");
      out.push_back(Token{unescaped(text.substr(start + 1, j - start - 1)), false});
      i = j + 1;
      if (i < text.size() && !blank(text[i]) && text[i] != ';' && text[i] != '{' && text[i] != ')')
        return Status::invalid_argument("a quoted string runs into the next word");
      continue;
    }
    // A plain word: up to a blank, ';' or '{' ("${" goes on); a backslash takes the next
    // character whatever it is.
    bool variable = false;
    for (; i < text.size(); ++i) {
      const char d = text[i];
      if (d == '\\') {
        ++i;
        variable = false;
        continue;
      }
      if (d == '{' && variable) {
        variable = false;
        continue;
      }
      variable = d == '$';
      if (blank(d) || d == ';' || d == '{')
        break;
    }
    out.push_back(Token{unescaped(text.substr(start, std::min(i, text.size()) - start)), false});
  }
  return out;
}

bool ends_with_any(std::string_view name, std::initializer_list<std::string_view> endings) {
  for (std::string_view e : endings) {
    if (name.ends_with(e))
      return true;
  }
  return false;
}

bool starts_with_any(std::string_view name, std::initializer_list<std::string_view> starts) {
  for (std::string_view e : starts) {
    if (name.starts_with(e))
      return true;
  }
  return false;
}

// Why directive `name` may not appear in a gateway file ("" if it may).
std::string forbidden(std::string_view name) {
  static const std::set<std::string_view> kNamed = {"include",
                                                    "try_files",
                                                    "index",
                                                    "random_index",
                                                    "autoindex",
                                                    "ssl_conf_command",
                                                    "ssi",
                                                    "load_module",
                                                    "listen",
                                                    "root",
                                                    "alias",
                                                    "env",
                                                    "pid",
                                                    "lock_file",
                                                    "user",
                                                    "daemon",
                                                    "master_process",
                                                    "working_directory",
                                                    "thread_pool",
                                                    "ssl_engine",
                                                    "dav_methods",
                                                    "create_full_put_path",
                                                    "xslt_stylesheet",
                                                    "xml_entities",
                                                    "open_log_file_cache",
                                                    "google_perftools_profiles",
                                                    "debug_points",
                                                    "ssl_dhparam",
                                                    "ssl_crl",
                                                    "ssl_stapling_file",
                                                    "ssl_session_ticket_key"};
  if (kNamed.count(name) != 0 ||
      ends_with_any(name, {"_log", "_temp_path", "_cache_path", "_store", "_file", "_certificate",
                           "_certificate_key", "_crl", "_password_file", "_user_file"}) ||
      ends_with_any(name, {"_bind"}) ||
      starts_with_any(name, {"perl", "js_", "lua", "geoip", "worker_"}))
    return "it names a file, a path or a port on the node, or runs code";
  return "";
}

}  // namespace

Status check_gateway_directives(std::string_view path, std::string_view text) {
  auto tokens = tokenize(text);
  if (!tokens.ok())
    return Status::invalid_argument(std::string(path) + ": " + tokens.status().message());
  const bool http_level = path.starts_with("http/");
  std::vector<std::string> statement;  // the words since the last separator
  int depth = 0;
  for (const Token& t : *tokens) {
    if (!t.separator) {
      // nginx reads variable names and "unix:" in any case.
      std::string lower = t.text;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (lower.find("raftnginx") != std::string::npos)
        return Status::invalid_argument(std::string(path) + ": \"" + t.text.substr(0, 64) +
                                        "\": names holding \"raftnginx\" are the gateway's own");
      if (lower.find("unix:") != std::string::npos)
        return Status::invalid_argument(
            std::string(path) + ": no Unix socket: a gateway file reaches the network only");
      statement.push_back(t.text);
      continue;
    }
    if (t.text == "}") {
      if (!statement.empty() || depth == 0)
        return Status::invalid_argument(std::string(path) + ": an unbalanced '}'");
      --depth;
      continue;
    }
    if (statement.empty())
      return Status::invalid_argument(std::string(path) + ": an empty statement before '" + t.text +
                                      "'");
    const std::string& name = statement.front();
    // Where a request goes is fixed in the file: a variable there could name anything at run
    // time (a Unix socket too).
    const bool names_a_target =
        name.ends_with("_pass") || (name == "server" && t.text == ";") || name == "mirror";
    for (size_t i = 1; names_a_target && i < statement.size(); ++i) {
      if (statement[i].find('$') != std::string::npos)
        return Status::invalid_argument(std::string(path) + ": \"" + name +
                                        "\" takes no variable: where requests go is fixed");
    }
    const bool is_map_include = name == "include" && statement.size() == 2 &&
                                statement[1].starts_with("cluster/maps/") &&
                                check_gateway_path(statement[1].substr(8)).ok();
    // A map file's lines are a key and a value, but for the map block's own directives.
    const bool checked = !path.starts_with("maps/") || name == "include";
    if (std::string why = forbidden(name); checked && !why.empty() && !is_map_include)
      return Status::invalid_argument(std::string(path) + ": \"" + name.substr(0, 64) +
                                      "\" is not allowed in a gateway file: " + why);
    if (t.text == "{") {
      if (name == "server" && http_level && depth == 0)
        return Status::invalid_argument(
            std::string(path) +
            ": no server blocks: a gateway file adds to the gateway's own server (server/) or "
            "the http level around it");
      ++depth;
    }
    statement.clear();
  }
  if (!statement.empty() || depth != 0)
    return Status::invalid_argument(std::string(path) + ": an unfinished statement or block");
  return Status();
}

Status check_gateway_path(std::string_view path) {
  const auto bad = [&] {
    return Status::invalid_argument(
        "a gateway file is http/NAME.conf, server/NAME.conf or maps/NAME.map, NAME being 1 to 64 "
        "of A-Z a-z 0-9 _ -");
  };
  std::string_view name;
  for (const auto& [kind, suffix] :
       {std::pair{"http/", ".conf"}, std::pair{"server/", ".conf"}, std::pair{"maps/", ".map"}}) {
    if (path.starts_with(kind) && path.ends_with(suffix) &&
        path.size() > std::strlen(kind) + std::strlen(suffix)) {
      name = path.substr(std::strlen(kind), path.size() - std::strlen(kind) - std::strlen(suffix));
      break;
    }
  }
  if (name.empty() || name.size() > 64)
    return bad();
  for (const char c : name) {
    if (!name_char(c))
      return bad();
  }
  return Status();
}

Status check_gateway_files(const GatewayFiles& files) {
  if (files.files.size() > kMaxGatewayFiles)
    return Status::invalid_argument("at most " + std::to_string(kMaxGatewayFiles) +
                                    " gateway files");
  size_t total = 0;
  for (const auto& [path, content] : files.files) {
    if (Status s = check_gateway_path(path); !s.ok())
      return Status::invalid_argument(path.substr(0, 80) + ": " + s.message());
    if (content.size() > kMaxGatewayFileBytes)
      return Status::invalid_argument(path + " is larger than " +
                                      std::to_string(kMaxGatewayFileBytes) + " bytes");
    if (content.find('\0') != std::string::npos)
      return Status::invalid_argument(path + " holds a NUL byte");
    if (Status s = check_gateway_directives(path, content); !s.ok())
      return s;
    total += content.size();
  }
  if (total > kMaxGatewayBytes)
    return Status::invalid_argument("the gateway files are larger than " +
                                    std::to_string(kMaxGatewayBytes) + " bytes together");
  return Status();
}

Status test_gateway(const std::string& binary, const GatewayConf& conf, const std::string& dir,
                    const GatewayFiles& files, std::chrono::milliseconds timeout) {
  if (Status s = check_gateway_files(files); !s.ok())
    return s;
  auto rendered = render_nginx_conf(conf);
  if (!rendered.ok())
    return rendered.status();
  const fs::path root(dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (Status s = write_tree(root / "cluster", files); !s.ok())
    return s;
  if (Status s = write_file(root / "nginx.conf", *rendered); !s.ok())
    return s;
  auto ran = run({binary, "-t", "-q", "-p", conf.prefix, "-c", (root / "nginx.conf").string(), "-e",
                  conf.prefix + "/logs/error.log"},
                 timeout);
  if (!ran.ok())
    return Status::io_error("cannot run " + binary + " -t: " + ran.status().message());
  if (ran->timed_out)
    return Status::invalid_argument("nginx -t took longer than " + std::to_string(timeout.count()) +
                                    " ms (a name to resolve?)");
  if (WIFEXITED(ran->status) && WEXITSTATUS(ran->status) == 127)
    return Status::io_error("cannot run " + binary);
  if (!WIFEXITED(ran->status) || WEXITSTATUS(ran->status) != 0)
    return Status::invalid_argument(complaint(ran->output, root));
  return Status();
}

Status install_gateway_files(const std::string& prefix, const GatewayFiles& files,
                             uint64_t generation) {
  const fs::path root(prefix);
  // Never the name of the live set (generations start again at each start): a unique one.
  std::string name;
  for (uint64_t n = 0; name.empty() || fs::exists(fs::symlink_status(root / name)); ++n)
    name = "cluster." + std::to_string(files.index) + "-" + std::to_string(generation) + "-" +
           std::to_string(n);
  if (Status s = write_tree(root / name, files); !s.ok())
    return s;
  std::error_code ec;
  const fs::path live = root / "cluster";
  const fs::path link = root / "cluster.link";
  fs::remove(link, ec);
  fs::create_directory_symlink(name, link, ec);
  if (ec)
    return Status::io_error("cannot link " + link.string() + ": " + ec.message());
  if (fs::is_directory(fs::symlink_status(live)))
    fs::remove_all(live, ec);  // a directory, not a link: from a copy made by hand
  fs::rename(link, live, ec);
  if (ec)
    return Status::io_error("cannot swap in " + live.string() + ": " + ec.message());
  std::vector<fs::path> old;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string entry = it->path().filename().string();
    if (entry.starts_with("cluster.") && entry != name && entry != "cluster.link")
      old.push_back(it->path());
  }
  for (const fs::path& p : old)
    fs::remove_all(p, ec);
  return Status();
}

Status NginxCheck::check(const GatewayFiles& candidate) const {
  std::lock_guard lock(mu_);
  const GatewayConf conf = running_ ? running_() : conf_;
  return test_gateway(binary_, conf, conf.prefix + "/check", candidate);
}

void NginxCheck::follow(std::function<GatewayConf()> running) {
  std::lock_guard lock(mu_);
  running_ = std::move(running);
}

}  // namespace raftnginx::nginx
