// LogLimiter: keeps a repeating error from flooding the log. The first event
// is logged, then at most one per interval; the events in between are only
// counted, and the next line that is logged says how many were left out.
//
// Why: one failing condition (a full disk refusing every write) can repeat
// thousands of times a second; an operator needs to see that it happens, how
// often, and when it stops, not thousands of identical lines.
//
//   uint64_t suppressed = 0;
//   if (limiter_.Allow(now_ms, &suppressed)) {
//     LOG(ERROR) << "..." << base::SuppressedNote(suppressed);
//   }
//
// Time is passed in by the caller (milliseconds of any clock), which keeps
// this testable without a clock. Thread-safety: none (one owner thread).

#ifndef DISTRI_BASE_LOG_LIMITER_H_
#define DISTRI_BASE_LOG_LIMITER_H_

#include <cstdint>
#include <string>

namespace distri::base {

class LogLimiter {
 public:
  // REQUIRES: interval_ms >= 0 (0 logs every event).
  explicit LogLimiter(int64_t interval_ms) : interval_ms_(interval_ms) {}

  // True if this event should be logged now; *suppressed is then the number
  // of events not logged since the last logged one (else left unchanged).
  bool Allow(int64_t now_ms, uint64_t* suppressed) {
    if (logged_any_ && now_ms - last_ms_ < interval_ms_) {
      suppressed_++;
      return false;
    }
    logged_any_ = true;
    last_ms_ = now_ms;
    *suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

  // Events not logged since the last logged one.
  uint64_t suppressed() const { return suppressed_; }

  // Forgets the history: the next event is logged at once. For when the
  // condition ended (the disk has space again), so that its next occurrence
  // is reported promptly.
  void Reset() {
    logged_any_ = false;
    suppressed_ = 0;
  }

 private:
  const int64_t interval_ms_;
  bool logged_any_ = false;
  int64_t last_ms_ = 0;
  uint64_t suppressed_ = 0;
};

// " (N similar lines suppressed)" for N > 0, else "": the tail of a line
// logged through a LogLimiter.
inline std::string SuppressedNote(uint64_t suppressed) {
  if (suppressed == 0) return std::string();
  return " (" + std::to_string(suppressed) + " more since the last such line, not logged)";
}

}  // namespace distri::base

#endif  // DISTRI_BASE_LOG_LIMITER_H_
