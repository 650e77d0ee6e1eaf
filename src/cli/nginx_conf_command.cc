#include "cli/nginx_conf_command.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/options.h"
#include "nginx/conf.h"

namespace raftnginx::cli {

int run_nginx_conf_command(int argc, char** argv) {
  nginx::GatewayConf conf;
  std::string max_body = format_size(defaults::kMaxBody);
  CLI::App app{
      "raft-nginx nginx-conf: prints the nginx.conf of one node's gateway, for an nginx managed "
      "outside the daemon (the daemon's --nginx-listen runs and reloads one itself).\n"
      "Regenerate and reload it when members join or leave."};
  app.add_option("--listen", conf.listen, "Address nginx serves")->required();
  app.add_option("--daemon", conf.local_daemon, "HTTP address of this node's daemon")->required();
  app.add_option("--prefix", conf.prefix, "nginx prefix: pid, logs and temp paths")->required();
  app.add_option("--member", conf.members,
                 "HTTP address of a member that may lead (repeat for each member)");
  app.add_option("--max-body", max_body, "Largest request body")->capture_default_str();
  app.add_option("--name", conf.node_name, "Node name, for the header comment");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  auto size = parse_size(max_body);
  if (!size.ok()) {
    std::cerr << "raft-nginx nginx-conf: --max-body: " << size.status().message() << "\n";
    return 2;
  }
  conf.max_body = *size;
  auto rendered = nginx::render_nginx_conf(conf);
  if (!rendered.ok()) {
    std::cerr << "raft-nginx nginx-conf: " << rendered.status().message() << "\n";
    return 2;
  }
  std::cout << *rendered;
  return 0;
}

}  // namespace raftnginx::cli
