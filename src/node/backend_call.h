// backend_call: how the node calls into the state machine, a program's own code
// (include/raftnginx/state_machine.h). An exception it throws becomes an IOError naming the call,
// so that the node fails as for any error of its backend (it stops, and the daemon exits 1 for a
// supervisor to restart it) rather than the process dying in std::terminate.
#pragma once

#include <exception>
#include <string>

#include "raftnginx/status.h"

namespace raftnginx::node {

// Runs `call` (returning a Status); REQUIRES: `what` names it for a person ("apply").
template <typename Call>
Status backend_call(const char* what, Call&& call) {
  try {
    return call();
  } catch (const std::exception& e) {
    return Status::io_error(std::string("the state machine's ") + what + " threw: " + e.what());
  } catch (...) {
    return Status::io_error(std::string("the state machine's ") + what + " threw");
  }
}

}  // namespace raftnginx::node
