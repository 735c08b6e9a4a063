// Small string helpers with Redis's exact rules, shared by the state machine
// (which must agree bit for bit on every replica) and command handlers.
//
// Thread-safety: pure functions.

#ifndef DISTRI_BASE_STRINGS_H_
#define DISTRI_BASE_STRINGS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace distri::base {

// Strict decimal int64: optional '-', no '+', no spaces, no leading zeros
// ("0" alone is fine), no overflow. Redis's string2ll.
bool ParseInt64(std::string_view s, int64_t* out);
bool ParseUint64(std::string_view s, uint64_t* out);

// A long double from decimal text, as Redis's string2ld: no spaces, no NaN, no
// literal that overflows or underflows to zero; "inf"/"-inf" are accepted.
bool ParseLongDouble(std::string_view s, long double* out);
// Human-friendly decimal: "%.17Lf" with trailing zeros (and dot) removed, as
// Redis's INCRBYFLOAT replies.
std::string FormatLongDouble(long double v);

// Redis-style glob: * ? [abc] [^a] [a-z] and \ escapes; byte-wise. Compiles
// the pattern on every call: to match one pattern against many texts, build
// a base::Glob (base/glob.h) once.
bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase = false);

// ASCII lower-casing into dst (resized). Returns a view of dst.
std::string_view AsciiLower(std::string_view s, std::string* dst);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// Hash for unordered containers keyed by std::string that may be looked up
// with a string_view (no temporary string): use with std::equal_to<>.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

}  // namespace distri::base

#endif  // DISTRI_BASE_STRINGS_H_
