// LatencyHistogram: a fixed-bucket histogram of durations in seconds, in the
// shape Prometheus wants (cumulative buckets, count, sum).
//
// Observe() may be called from one thread while another reads (the log's
// writer thread records fsync times the loop thread exports): counters are
// relaxed atomics, so a reader sees each counter whole, though a concurrent
// read may see count and buckets one observation apart.

#ifndef DISTRI_BASE_HISTOGRAM_H_
#define DISTRI_BASE_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace distri::base {

class LatencyHistogram {
 public:
  static constexpr std::array<double, 16> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                     1,      2.5,     5,      10};
  void Observe(double seconds) {
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
    for (size_t i = 0; i < kBounds.size(); i++) {
      if (seconds <= kBounds[i]) {
        buckets_[i].fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
  }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9; }
  // Observations <= kBounds[i].
  uint64_t CumulativeCount(size_t i) const {
    uint64_t n = 0;
    for (size_t k = 0; k <= i && k < buckets_.size(); k++) n += buckets_[k].load(std::memory_order_relaxed);
    return n;
  }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size()> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace distri::base

#endif  // DISTRI_BASE_HISTOGRAM_H_
