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
    if (now_s != last_sec_) {
      if (now_s < last_sec_ && now_s > last_sec_ - kSlots) {
        Bump(now_s, n);  // a late event (the clock stepped back): its second is still here
        return;
      }
      Advance(now_s);
    }
    Bump(now_s, n);
  }
  uint64_t total() const { return total_; }
  // Events in the last complete second (now_s - 1).
  uint64_t LastSecond(int64_t now_s) const { return Count(now_s - 1); }
  // Average events per second over the last 60 complete seconds.
  double LastMinute(int64_t now_s) const {
    uint64_t sum = 0;
    for (int64_t s = now_s - 60; s < now_s; s++) sum += Count(s);
    return static_cast<double>(sum) / 60.0;
  }

 private:
  // Per-room statistics keep two of these per room, so the slots are 32-bit
  // counts without their second (about 250 bytes in all): the slots hold the
  // seconds (last_sec_ - kSlots, last_sec_], and Advance zeroes the slots of
  // seconds it skips.
  static constexpr int kSlots = 61;  // 60 complete seconds plus the current one
  static std::size_t Index(int64_t sec) {
    return static_cast<std::size_t>(((sec % kSlots) + kSlots) % kSlots);
  }
  bool Holds(int64_t sec) const { return sec <= last_sec_ && sec > last_sec_ - kSlots; }
  uint64_t Count(int64_t sec) const { return Holds(sec) ? counts_[Index(sec)] : 0; }
  void Bump(int64_t sec, uint64_t n) {
    uint32_t& c = counts_[Index(sec)];
    c = n >= UINT32_MAX - c ? UINT32_MAX : static_cast<uint32_t>(c + n);
  }
  void Advance(int64_t now_s) {
    if (now_s < last_sec_ || now_s - last_sec_ >= kSlots) {
      counts_.fill(0);
    } else {
      for (int64_t s = last_sec_ + 1; s <= now_s; s++) counts_[Index(s)] = 0;
    }
    last_sec_ = now_s;
  }

  std::array<uint32_t, kSlots> counts_{};
  uint64_t total_ = 0;
  int64_t last_sec_ = -1;
};

}  // namespace distri::base

#endif  // DISTRI_BASE_RATE_COUNTER_H_
