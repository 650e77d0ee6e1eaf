// `raft-nginx certs DIR --nodes n1,n2,n3 [--hosts ...]`: the CA, node and client certificates
// and the auth file a secured cluster starts from, made with the OpenSSL library.
#pragma once

namespace raftnginx::cli {

// Runs the command with argv as given after "certs"; returns the exit code.
int run_certs_command(int argc, char** argv);

}  // namespace raftnginx::cli
