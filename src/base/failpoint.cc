// Failpoints: the DISTRI_FAILPOINTS parser, the actions, and the process registry.
// See failpoint.h for the grammar and how the macro uses these.

#include "base/failpoint.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>
#include <thread>

#include "base/logging.h"
#include "base/strings.h"

namespace distri::base {

namespace {

constexpr uint32_t kMaxSleepMs = 60000;
constexpr int kCrashExitCode = 137;  // what a shell reports for kill -9

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool ValidName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-';
    if (!ok) return false;
  }
  return true;
}

// A probability in [0, 1] written as decimal text ("0.1", "1", ".5").
bool ParseProbability(std::string_view s, double* out) {
  long double v;
  if (!ParseLongDouble(s, &v) || !std::isfinite(static_cast<double>(v)) || v < 0 || v > 1) {
    return false;
  }
  *out = static_cast<double>(v);
  return true;
}

Status Bad(std::string_view entry, std::string_view why) {
  return Status::InvalidArgument("DISTRI_FAILPOINTS entry '" + std::string(entry) + "': " +
                                 std::string(why));
}

// "action" or "action(arg)": the action word and its argument (empty when none).
Result<FailpointSpec> ParseAction(std::string_view entry, std::string_view text) {
  std::string_view word = text, arg;
  bool has_arg = false;
  if (size_t open = text.find('('); open != std::string_view::npos) {
    if (text.back() != ')') return Bad(entry, "missing ')'");
    word = Trim(text.substr(0, open));
    arg = Trim(text.substr(open + 1, text.size() - open - 2));
    has_arg = true;
  }
  FailpointSpec spec;
  if (word == "off") {
    if (has_arg) return Bad(entry, "off takes no argument");
    spec.action = FailpointAction::kOff;
  } else if (word == "sleep") {
    uint64_t ms;
    if (!has_arg || !ParseUint64(arg, &ms) || ms > kMaxSleepMs) {
      return Bad(entry, "sleep needs milliseconds, 0..60000: sleep(200)");
    }
    spec.action = FailpointAction::kSleep;
    spec.sleep_ms = static_cast<uint32_t>(ms);
  } else if (word == "drop") {
    if (!has_arg || !ParseProbability(arg, &spec.probability)) {
      return Bad(entry, "drop needs a probability in [0, 1]: drop(0.1)");
    }
    spec.action = FailpointAction::kDrop;
  } else if (word == "crash") {
    if (has_arg && !ParseProbability(arg, &spec.probability)) {
      return Bad(entry, "crash takes an optional probability in [0, 1]: crash(0.01)");
    }
    spec.action = FailpointAction::kCrash;
  } else {
    return Bad(entry, "unknown action (off, sleep(ms), drop(p), crash, crash(p))");
  }
  return spec;
}

// Each thread draws from its own generator: no lock on the hot path.
bool Chance(double p) {
  if (p >= 1.0) return true;
  if (p <= 0.0) return false;
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng) < p;
}

[[noreturn]] void CrashNow() { _exit(kCrashExitCode); }

}  // namespace

Result<std::vector<FailpointSpec>> ParseFailpoints(std::string_view config) {
  std::vector<FailpointSpec> specs;
  while (!config.empty()) {
    size_t semi = config.find(';');
    std::string_view entry = Trim(config.substr(0, semi));
    config = semi == std::string_view::npos ? std::string_view() : config.substr(semi + 1);
    if (entry.empty()) continue;  // "a=off;" and ";;" are fine
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) return Bad(entry, "expected name=action");
    std::string_view name = Trim(entry.substr(0, eq));
    if (!ValidName(name)) return Bad(entry, "a name is [a-z0-9_.-]+");
    for (const FailpointSpec& s : specs) {
      if (s.name == name) return Bad(entry, "name given twice");
    }
    Result<FailpointSpec> spec = ParseAction(entry, Trim(entry.substr(eq + 1)));
    if (!spec.ok()) return spec.status();
    spec->name = std::string(name);
    specs.push_back(std::move(spec.value()));
  }
  return specs;
}

Failpoint::Failpoint(FailpointSpec spec, CrashFn crash)
    : spec_(std::move(spec)), crash_(crash != nullptr ? crash : &CrashNow) {}

bool Failpoint::Fire() {
  switch (spec_.action) {
    case FailpointAction::kOff:
      return false;
    case FailpointAction::kSleep:
      hits_.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::milliseconds(spec_.sleep_ms));
      return false;
    case FailpointAction::kDrop:
      if (!Chance(spec_.probability)) return false;
      hits_.fetch_add(1, std::memory_order_relaxed);
      return true;
    case FailpointAction::kCrash:
      if (!Chance(spec_.probability)) return false;
      hits_.fetch_add(1, std::memory_order_relaxed);
      // One line on stderr first, so a test reading the node's log knows why it died.
      LOG(WARNING) << "failpoint " << spec_.name << ": crash (exit " << kCrashExitCode << ")";
      crash_();
      return false;  // only a test's crash function returns
  }
  return false;
}

FailpointRegistry::FailpointRegistry(std::vector<FailpointSpec> specs, Failpoint::CrashFn crash) {
  for (FailpointSpec& s : specs) {
    if (s.action == FailpointAction::kOff) continue;
    points_.push_back(std::make_unique<Failpoint>(std::move(s), crash));
  }
}

Failpoint* FailpointRegistry::Find(std::string_view name) const {
  for (const auto& p : points_) {
    if (p->spec().name == name) return p.get();
  }
  return nullptr;
}

const FailpointRegistry& ProcessFailpoints() {
  static const FailpointRegistry* const registry = [] {
    const char* env = std::getenv("DISTRI_FAILPOINTS");
    Result<std::vector<FailpointSpec>> specs = ParseFailpoints(env != nullptr ? env : "");
    CHECK(specs.ok()) << specs.status().message();
    for (const FailpointSpec& s : specs.value()) {
      LOG(WARNING) << "failpoint configured: " << s.name;
    }
    return new FailpointRegistry(std::move(specs.value()));  // lives as long as the process
  }();
  return *registry;
}

}  // namespace distri::base
