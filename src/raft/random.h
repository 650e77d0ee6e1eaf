// A small seeded generator (SplitMix64). The core draws its randomized election timeouts from one
// so that a run is reproducible from its seed; nothing in the core touches a global source.
#pragma once

#include <cstdint>

namespace raftnginx::raft {

class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n). REQUIRES: n > 0.
  uint64_t uniform(uint64_t n) { return next() % n; }

 private:
  uint64_t state_;
};

}  // namespace raftnginx::raft
