// Minimal logging and CHECK macros.
//
// LOG(INFO) << "..." writes one line to stderr with a timestamp and level.
// CHECK(cond) aborts with file:line when a programming invariant is broken;
// it is for bugs only, never for bad input (that returns a Status).
//
// Thread-safety: each log line is assembled in a local buffer and written with
// a single write(2), so lines from different threads do not interleave.

#ifndef DISTRI_BASE_LOGGING_H_
#define DISTRI_BASE_LOGGING_H_

#include <sstream>
#include <string>

namespace distri::base {

enum class LogLevel { kDebug = 0, kInfo, kWarning, kError, kFatal };

// Lines below this level are dropped. Set once at start-up (before threads).
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();  // writes the line; aborts for kFatal
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Swallows a stream expression when the level is disabled.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace distri::base

#define DISTRI_LOG_LEVEL_DEBUG ::distri::base::LogLevel::kDebug
#define DISTRI_LOG_LEVEL_INFO ::distri::base::LogLevel::kInfo
#define DISTRI_LOG_LEVEL_WARNING ::distri::base::LogLevel::kWarning
#define DISTRI_LOG_LEVEL_ERROR ::distri::base::LogLevel::kError
#define DISTRI_LOG_LEVEL_FATAL ::distri::base::LogLevel::kFatal

#define LOG(level)                                                   \
  (DISTRI_LOG_LEVEL_##level < ::distri::base::MinLogLevel())         \
      ? (void)0                                                      \
      : ::distri::base::LogVoidify() &                               \
            ::distri::base::LogMessage(DISTRI_LOG_LEVEL_##level, __FILE__, __LINE__).stream()

#define CHECK(cond)                                                                      \
  (cond) ? (void)0                                                                       \
         : ::distri::base::LogVoidify() &                                                \
               ::distri::base::LogMessage(::distri::base::LogLevel::kFatal, __FILE__, __LINE__) \
                       .stream()                                                         \
                   << "CHECK failed: " #cond " "

#endif  // DISTRI_BASE_LOGGING_H_
