#include "cli/service_manager.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace raftnginx::cli {

std::string service_manager_socket() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  return path == nullptr ? "" : path;
}

Status notify_service_manager(const std::string& path, std::string_view state) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() < 2 || path.size() >= sizeof(address.sun_path) ||
      (path[0] != '/' && path[0] != '@'))
    return Status::invalid_argument("NOTIFY_SOCKET is not a socket path: " + path);
  std::memcpy(address.sun_path, path.data(), path.size());
  if (path[0] == '@')
    address.sun_path[0] = '\0';  // an abstract socket: the name follows a NUL byte
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return Status::io_error(std::string("socket for NOTIFY_SOCKET: ") + std::strerror(errno));
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  const ssize_t sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&address), length);
  const int error = errno;
  ::close(fd);
  if (sent != static_cast<ssize_t>(state.size()))
    return Status::io_error("NOTIFY_SOCKET " + path + ": " + std::strerror(error));
  return Status();
}

}  // namespace raftnginx::cli
