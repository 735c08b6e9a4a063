// Failpoints: named places in the code where a test build can be told to sleep, drop or
// crash, so the fault suite (tests/test_cluster_faults.py) can hit the paths that real
// faults hit only rarely: a slow fsync, a lost message, a crash between persist and apply.
//
//   if (DISTRI_FAILPOINT("raft.send")) return;   // "drop": skip the send this time
//
// The macro exists only when CMake's DISTRI_FAILPOINTS option is on (the default in the
// sanitizer test build); otherwise it is the constant `false` and costs nothing. A test
// configures failpoints through the environment of the process, read once, at the first
// failpoint evaluated:
//
//   DISTRI_FAILPOINTS="raft.persist=sleep(200);raft.send=drop(0.1);raft.apply=crash"
//
// Grammar: entries separated by ';', each `name=action`, spaces around tokens ignored.
//   off            nothing (the same as leaving the name out)
//   sleep(ms)      sleep ms milliseconds (0..60000) in the calling thread, then go on
//   drop(p)        with probability p (0..1) the macro is true: the caller skips the action
//   crash          _exit(137) at once, as kill -9 would (no destructors, no flush)
//   crash(p)       crash with probability p
// Names are [a-z0-9_.-]+ and may appear once. A malformed DISTRI_FAILPOINTS stops the
// process at the first failpoint with a message naming the bad entry (a test build only).
//
// Thread-safety: the registry is built once (a function-local static) and read-only after;
// each failpoint counts its hits atomically, and draws from a per-thread generator. A
// failpoint may be evaluated from any thread.

#ifndef DISTRI_BASE_FAILPOINT_H_
#define DISTRI_BASE_FAILPOINT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "distri/status.h"

namespace distri::base {

enum class FailpointAction { kOff, kSleep, kDrop, kCrash };

struct FailpointSpec {
  std::string name;
  FailpointAction action = FailpointAction::kOff;
  double probability = 1.0;  // kDrop, kCrash
  uint32_t sleep_ms = 0;     // kSleep
};

// Parses the DISTRI_FAILPOINTS grammar above; an empty string is no failpoints.
Result<std::vector<FailpointSpec>> ParseFailpoints(std::string_view config);

// One configured failpoint.
class Failpoint {
 public:
  // Called for the crash action; tests replace it to observe a crash without dying.
  using CrashFn = void (*)();

  explicit Failpoint(FailpointSpec spec, CrashFn crash = nullptr);
  Failpoint(const Failpoint&) = delete;
  Failpoint& operator=(const Failpoint&) = delete;

  // Runs the action; true when the caller must skip what the failpoint guards (drop).
  bool Fire();

  const FailpointSpec& spec() const { return spec_; }
  // Times the action took effect (a drop or crash that the dice spared does not count).
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }

 private:
  FailpointSpec spec_;
  CrashFn crash_;
  std::atomic<uint64_t> hits_{0};
};

// The failpoints of a configuration, by name.
class FailpointRegistry {
 public:
  explicit FailpointRegistry(std::vector<FailpointSpec> specs,
                             Failpoint::CrashFn crash = nullptr);
  // nullptr when name is not configured (or configured off).
  Failpoint* Find(std::string_view name) const;

 private:
  std::vector<std::unique_ptr<Failpoint>> points_;
};

// The process's registry, from DISTRI_FAILPOINTS; logs the configured failpoints once.
// A malformed variable is a fatal error (the test that set it is wrong).
const FailpointRegistry& ProcessFailpoints();

}  // namespace distri::base

#if defined(DISTRI_FAILPOINTS) && DISTRI_FAILPOINTS
// name must be a string literal: each call site looks its failpoint up once.
#define DISTRI_FAILPOINT(name)                                                         \
  ([]() -> bool {                                                                      \
    static ::distri::base::Failpoint* const fp =                                       \
        ::distri::base::ProcessFailpoints().Find(name);                                \
    return fp != nullptr && fp->Fire();                                                \
  }())
#else
#define DISTRI_FAILPOINT(name) false
#endif

#endif  // DISTRI_BASE_FAILPOINT_H_
