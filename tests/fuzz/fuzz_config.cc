// Fuzz target: the config.json reader. Any file either loads or is refused with a message.
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "cli/options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace raftnginx;
  static const std::string path = "/tmp/raftnginx-fuzz-config-" + std::to_string(getpid());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  cli::DaemonOptions options;
  std::vector<std::string> warnings;
  Status s = cli::load_config_file(path, &options, &warnings);
  RAFTNGINX_CHECK(s.ok() || !s.message().empty(), "a refused config must say why");
  return 0;
}
