// A reference glob matcher for tests and fuzzing only: the rules of glob.h
// read off the pattern directly, with memoised recursion over (pattern
// offset, text offset). Obviously correct, O(|pattern| x |text|) time and
// memory: for small inputs, to check base::Glob against.

#ifndef DISTRI_BASE_GLOB_REFERENCE_H_
#define DISTRI_BASE_GLOB_REFERENCE_H_

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace distri::base {

class GlobReference {
 public:
  GlobReference(std::string_view p, std::string_view t, bool nocase)
      : p_(p), t_(t), nocase_(nocase) {
    memo_.assign((p.size() + 1) * (t.size() + 1), -1);
  }
  bool Match() { return At(0, 0); }

 private:
  char Fold(char c) const {
    return nocase_ && c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
  }

  // Whether the one-byte element at p_[pi] accepts c; *next is where it ends.
  bool Accepts(size_t pi, char c, size_t* next) const {
    const size_t n = p_.size();
    char tc = Fold(c);
    if (p_[pi] == '?') {
      *next = pi + 1;
      return true;
    }
    if (p_[pi] == '[') {
      size_t j = pi + 1;
      bool negate = j < n && p_[j] == '^';
      if (negate) j++;
      bool hit = false;
      while (j < n && p_[j] != ']') {
        if (p_[j] == '\\' && j + 1 < n) {
          hit |= Fold(p_[j + 1]) == tc;
          j += 2;
        } else if (j + 2 < n && p_[j + 1] == '-' && p_[j + 2] != ']') {
          signed char lo = Fold(p_[j]), hi = Fold(p_[j + 2]);
          if (lo > hi) std::swap(lo, hi);
          hit |= static_cast<signed char>(tc) >= lo && static_cast<signed char>(tc) <= hi;
          j += 3;
        } else {
          hit |= Fold(p_[j]) == tc;
          j++;
        }
      }
      *next = j < n ? j + 1 : j;
      return hit != negate;
    }
    size_t k = pi;
    if (p_[k] == '\\' && k + 1 < n) k++;
    *next = k + 1;
    return Fold(p_[k]) == tc;
  }

  bool At(size_t pi, size_t ti) {
    int8_t& m = memo_[pi * (t_.size() + 1) + ti];
    if (m >= 0) return m;
    bool r;
    if (pi == p_.size()) {
      r = ti == t_.size();
    } else if (p_[pi] == '*') {
      r = At(pi + 1, ti) || (ti < t_.size() && At(pi, ti + 1));
    } else {
      size_t next;
      r = ti < t_.size() && Accepts(pi, t_[ti], &next) && At(next, ti + 1);
    }
    m = r;
    return r;
  }

  std::string_view p_, t_;
  bool nocase_;
  std::vector<int8_t> memo_;
};

inline bool ReferenceGlobMatch(std::string_view p, std::string_view t, bool nocase = false) {
  return GlobReference(p, t, nocase).Match();
}

}  // namespace distri::base

#endif  // DISTRI_BASE_GLOB_REFERENCE_H_
