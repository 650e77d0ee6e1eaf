#include "cli/daemon.h"
#include "cli/options.h"

int main(int argc, char** argv) {
  raftnginx::cli::ParsedOptions parsed = raftnginx::cli::parse_options(argc, argv);
  if (!parsed.options)
    return parsed.exit_code;
  return raftnginx::cli::run_daemon(*parsed.options);
}
