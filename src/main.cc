// raft-nginx: the daemon with the built-in key-value store, registered through the public hooks
// as any user's backend is (include/raftnginx/daemon.h).
#include "kv/kv_backends.h"
#include "raftnginx/daemon.h"

int main(int argc, char** argv) {
  raftnginx::DaemonHooks hooks;
  raftnginx::kv::add_backends(&hooks);
  return raftnginx::run_daemon(argc, argv, hooks);
}
