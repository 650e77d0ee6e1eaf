// Histogram: a latency distribution that many threads record into without locks, and a reader
// (the /metrics endpoint) samples. Buckets are Prometheus-style cumulative upper bounds.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace raftnginx {

class Histogram {
 public:
  // Upper bounds in seconds, from 100 us to 10 s.
  static constexpr std::array<double, 14> kBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0};

  void record(std::chrono::nanoseconds elapsed) {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i])
      ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_nanos_.fetch_add(static_cast<uint64_t>(elapsed.count()), std::memory_order_relaxed);
  }

  struct Sample {
    std::array<uint64_t, kBounds.size() + 1> counts{};  // per bucket, the last one is +Inf
    double sum_seconds = 0;
  };
  Sample sample() const {
    Sample s;
    for (size_t i = 0; i < counts_.size(); ++i)
      s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.sum_seconds = static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) / 1e9;
    return s;
  }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> counts_{};
  std::atomic<uint64_t> sum_nanos_{0};
};

}  // namespace raftnginx
