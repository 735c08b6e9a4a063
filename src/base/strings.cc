// See strings.h.

#include "base/strings.h"

#include "base/glob.h"

#include <cctype>
#include <cerrno>
#include <utility>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace distri::base {

bool ParseUint64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  if (s[0] == '0') {
    if (s.size() != 1) return false;
    *out = 0;
    return true;
  }
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

bool ParseInt64(std::string_view s, int64_t* out) {
  bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  uint64_t v;
  if (!ParseUint64(s, &v)) return false;
  if (neg) {
    if (v == 0 || v > static_cast<uint64_t>(INT64_MAX) + 1) return false;  // "-0" rejected
    *out = static_cast<int64_t>(0 - v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}

bool ParseLongDouble(std::string_view s, long double* out) {
  if (s.empty() || s.size() > 5000 || std::isspace(static_cast<unsigned char>(s[0])) ||
      std::isspace(static_cast<unsigned char>(s.back()))) {
    return false;
  }
  std::string buf(s);
  char* end = nullptr;
  errno = 0;
  long double v = std::strtold(buf.c_str(), &end);
  // As Redis's string2ld: an overflowing or vanishing literal is refused, but
  // "inf" itself is a value (INCRBYFLOAT then refuses the infinite result).
  const bool out_of_range = errno == ERANGE && (std::isinf(v) || v == 0);
  if (end != buf.c_str() + buf.size() || out_of_range || std::isnan(v)) return false;
  *out = v;
  return true;
}

std::string FormatLongDouble(long double v) {
  char buf[5000];
  int n = std::snprintf(buf, sizeof buf, "%.17Lf", v);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof buf) return "0";
  std::string s(buf, n);
  if (s.find('.') != std::string::npos) {
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
  }
  if (s == "-0") return std::string("0");
  return s;
}

bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase) {
  return Glob(pattern, nocase).Match(text);
}

std::string_view AsciiLower(std::string_view s, std::string* dst) {
  dst->resize(s.size());
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    (*dst)[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  }
  return *dst;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

}  // namespace distri::base
