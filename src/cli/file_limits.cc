#include "cli/file_limits.h"

#include <sys/resource.h>

#include <algorithm>
#include <string>

#include "util/defaults.h"

namespace raftnginx::cli {

Result<FileBudget> share_open_files(size_t http_wanted) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return Status::io_error("cannot read the open-file limit");
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0)
      lim = raised;
  }
  FileBudget b;
  b.limit = lim.rlim_cur == RLIM_INFINITY ? SIZE_MAX : static_cast<size_t>(lim.rlim_cur);
  const size_t eighth = b.limit / 8;
  b.raft_connections = std::min(defaults::kMaxRaftConnections, eighth);
  b.backend_files = std::min<size_t>(defaults::kRocksDbMaxOpenFiles, eighth);
  const size_t taken = defaults::kReservedFiles + b.raft_connections + b.backend_files;
  const size_t left = b.limit > taken ? b.limit - taken : 0;
  if (left < defaults::kMinHttpConnections) {
    return Status::invalid_argument(
        "the process may open only " + std::to_string(b.limit) +
        " files (RLIMIT_NOFILE): raise it (ulimit -n, systemd's LimitNOFILE) to at least " +
        std::to_string(2 * (defaults::kReservedFiles + defaults::kMinHttpConnections)));
  }
  b.http_connections = std::min(http_wanted, left);
  return b;
}

}  // namespace raftnginx::cli
