// RateCounter: a total plus per-second buckets for the last minute, so
// statistics can say "per second over the last 1 s and 1 min" from counters
// kept current on every event (no sampling thread).
//
// Add() is O(1); the rates are computed on request. Time is passed in by the
// caller (whole seconds), which keeps this testable without a clock.
//
// Thread-safety: none.

#ifndef DISTRI_BASE_RATE_COUNTER_H_
#define DISTRI_BASE_RATE_COUNTER_H_

#include <array>
#include <cstddef>
#include <cstdint>

namespace distri::base {

class RateCounter {
 public:
  void Add(int64_t now_s, uint64_t n = 1) {
    total_ += n;
    if (now_s == last_sec_) {  // the common case: same second as the last event
      slots_[last_index_].count += n;
      return;
    }
    last_sec_ = now_s;
    last_index_ = Index(now_s);
    Slot& s = slots_[last_index_];
    if (s.sec != now_s) {
      s.sec = now_s;
      s.count = 0;
    }
    s.count += n;
  }
  uint64_t total() const { return total_; }
  // Events in the last complete second (now_s - 1).
  uint64_t LastSecond(int64_t now_s) const {
    const Slot& s = slots_[Index(now_s - 1)];
    return s.sec == now_s - 1 ? s.count : 0;
  }
  // Average events per second over the last 60 complete seconds.
  double LastMinute(int64_t now_s) const {
    uint64_t sum = 0;
    for (const Slot& s : slots_) {
      if (s.sec >= now_s - 60 && s.sec < now_s) sum += s.count;
    }
    return static_cast<double>(sum) / 60.0;
  }

 private:
  static constexpr int kSlots = 61;  // 60 complete seconds plus the current one
  struct Slot {
    int64_t sec = -1;
    uint64_t count = 0;
  };
  static std::size_t Index(int64_t sec) { return static_cast<std::size_t>(((sec % kSlots) + kSlots) % kSlots); }
  std::array<Slot, kSlots> slots_{};
  uint64_t total_ = 0;
  int64_t last_sec_ = -1;
  std::size_t last_index_ = 0;
};

}  // namespace distri::base

#endif  // DISTRI_BASE_RATE_COUNTER_H_
