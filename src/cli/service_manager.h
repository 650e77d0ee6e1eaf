// Telling systemd how the daemon is doing, for a unit of Type=notify (deploy/debian/): the
// datagram protocol of sd_notify(3), without libsystemd. The daemon sends "READY=1" once the
// node would answer /readyz with 200, and "STOPPING=1" when it starts to stop.
//
// Threads: any. Each call opens, uses and closes a socket of its own.
#pragma once

#include <string>
#include <string_view>

#include "raftnginx/status.h"

namespace raftnginx::cli {

// The socket systemd named in NOTIFY_SOCKET ("" when the daemon was not started by systemd).
std::string service_manager_socket();

// Sends `state` (e.g. "READY=1") to the socket at `path` (a filesystem path, or "@name" for an
// abstract one). IOError if it cannot be sent; InvalidArgument for a path no socket can have.
Status notify_service_manager(const std::string& path, std::string_view state);

}  // namespace raftnginx::cli
