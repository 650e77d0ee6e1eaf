#include <string_view>

#include "cli/certs_command.h"
#include "cli/daemon.h"
#include "cli/nginx_conf_command.h"
#include "cli/options.h"
#include "cli/repair.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "nginx-conf")
    return raftnginx::cli::run_nginx_conf_command(argc - 1, argv + 1);
  if (argc > 1 && std::string_view(argv[1]) == "certs")
    return raftnginx::cli::run_certs_command(argc - 1, argv + 1);
  if (argc > 1 && std::string_view(argv[1]) == "repair")
    return raftnginx::cli::run_repair_command(argc - 1, argv + 1);
  raftnginx::cli::ParsedOptions parsed = raftnginx::cli::parse_options(argc, argv);
  if (!parsed.options)
    return parsed.exit_code;
  return raftnginx::cli::run_daemon(*parsed.options);
}
