// `raft-nginx nginx-conf ...`: prints a node's gateway nginx.conf (nginx/conf.h).
#pragma once

namespace raftnginx::cli {

// argv[0] is the subcommand's name; returns the exit code.
int run_nginx_conf_command(int argc, char** argv);

}  // namespace raftnginx::cli
