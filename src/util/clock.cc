#include "util/clock.h"

namespace raftnginx {
namespace {

class RealClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
  uint64_t wall_ms() const override {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  }
};

}  // namespace

const Clock* Clock::real() {
  // Never destroyed: threads that outlive main() (a leaked node in a fuzz harness, a detached
  // logger) may still read the time while static destructors run.
  static const Clock* const clock = new RealClock();
  return clock;
}

}  // namespace raftnginx
