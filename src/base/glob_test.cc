// Tests for base::Glob: fixed cases, agreement with the reference matcher
// (glob_reference.h) on random patterns and texts, and the cost bounds on
// hostile patterns.

#include "base/glob.h"

#include "base/glob_reference.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace distri::base {
namespace {

bool Ref(std::string_view p, std::string_view t, bool nocase = false) {
  return ReferenceGlobMatch(p, t, nocase);
}
bool G(std::string_view p, std::string_view t, bool nocase = false) {
  return Glob(p, nocase).Match(t);
}

TEST(GlobTest, Basics) {
  EXPECT_TRUE(G("*", ""));
  EXPECT_TRUE(G("", ""));
  EXPECT_FALSE(G("", "a"));
  EXPECT_TRUE(G("h?llo", "hello"));
  EXPECT_TRUE(G("h*llo", "heeeello"));
  EXPECT_TRUE(G("h[ae]llo", "hallo"));
  EXPECT_FALSE(G("h[ae]llo", "hillo"));
  EXPECT_TRUE(G("h[^e]llo", "hallo"));
  EXPECT_FALSE(G("h[^e]llo", "hello"));
  EXPECT_TRUE(G("h[a-b]llo", "hbllo"));
  EXPECT_TRUE(G("h[b-a]llo", "hallo"));  // ends in either order
  EXPECT_TRUE(G("a\\*b", "a*b"));
  EXPECT_FALSE(G("a\\*b", "axb"));
  EXPECT_TRUE(G("[\\]]", "]"));
  EXPECT_TRUE(G("ab[c", "abc"));  // an unterminated class ends the pattern
  EXPECT_TRUE(G("a\\", "a\\"));   // a trailing backslash is itself
  EXPECT_TRUE(G("user:*:name", "user:42:name"));
  EXPECT_FALSE(G("user:*:name", "user:42:age"));
  EXPECT_TRUE(G("*a*b*", "xxaxxbxx"));
  EXPECT_FALSE(G("*a*b*", "xxbxxaxx"));
  EXPECT_TRUE(G("a*a", "aa"));
  EXPECT_FALSE(G("a*a", "a"));  // the two a's may not overlap
  EXPECT_TRUE(G("HELLO", "hello", true));
  EXPECT_TRUE(G("h[A-C]llo", "hbllo", true));
  EXPECT_FALSE(G("HELLO", "hello"));
}

TEST(GlobTest, AgreesWithReferenceOnRandomPatterns) {
  std::mt19937 rng(20261125);
  const std::string pattern_bytes = "ab*?[]^-\\*\x80\xff";
  const std::string text_bytes = "abAB-]^\\*\x80\xff";
  for (int round = 0; round < 200000; round++) {
    std::string p, t;
    size_t plen = rng() % 12, tlen = rng() % 14;
    for (size_t i = 0; i < plen; i++) p += pattern_bytes[rng() % pattern_bytes.size()];
    for (size_t i = 0; i < tlen; i++) t += text_bytes[rng() % text_bytes.size()];
    bool nocase = rng() % 4 == 0;
    ASSERT_EQ(G(p, t, nocase), Ref(p, t, nocase))
        << "pattern '" << p << "' text '" << t << "' nocase " << nocase;
  }
}

TEST(GlobTest, LongSegmentsAgreeWithReference) {
  // Segments longer than the naive limit and than one 64-bit word exercise
  // KMP and multi-word Shift-And.
  std::mt19937 rng(7);
  for (int round = 0; round < 3000; round++) {
    std::string p = rng() % 2 ? "*" : "", t;
    size_t seg = 60 + rng() % 140;
    for (size_t i = 0; i < seg; i++) {
      switch (rng() % 8) {
        case 0: p += '?'; break;
        case 1: p += "[ab]"; break;
        default: p += static_cast<char>('a' + rng() % 2);
      }
      if (rng() % 40 == 0) p += '*';
    }
    if (rng() % 2) p += '*';
    size_t tlen = rng() % 400;
    for (size_t i = 0; i < tlen; i++) t += static_cast<char>('a' + (rng() % 16 == 0));
    ASSERT_EQ(G(p, t), Ref(p, t)) << "pattern '" << p << "' text '" << t << "'";
  }
}

double SecondsFor(const std::function<void()>& f) {
  auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(GlobTest, HostilePatternsStayCheap) {
  // Issue 9 item 12: `*` + 5,000 a's + `b` against long keys of a's cost
  // |pattern| x |key| per key. Each of these took 10^8 steps per match before.
  const std::string key(20000, 'a');
  const std::vector<std::string> patterns = {
      "*" + std::string(5000, 'a') + "b",
      "*" + std::string(5000, '?') + "b*",
      "*" + [] { std::string s; for (int i = 0; i < 2500; i++) s += "a?"; return s; }() + "b*",
      "*" + [] { std::string s; for (int i = 0; i < 2000; i++) s += "[a]"; return s; }() + "b*",
      [] { std::string s; for (int i = 0; i < 5000; i++) s += "*a"; return s + "*b"; }(),
  };
  for (const std::string& p : patterns) {
    Glob g(p);
    double s = SecondsFor([&] { EXPECT_FALSE(g.Match(key)) << p.substr(0, 20); });
    EXPECT_LT(s, 1.0) << p.substr(0, 20);  // generous: a sanitizer build on a loaded box
  }
  // Redis's own regression pattern: 50,000 nested stars.
  std::string stars;
  for (int i = 0; i < 50000; i++) stars += "*?";
  Glob nested(stars);
  EXPECT_LT(SecondsFor([&] { EXPECT_TRUE(nested.Match(std::string(60000, 'a'))); }), 1.0);
  // A pattern longer than the text is refused without looking at it.
  Glob long_pattern(std::string(20000, 'x'));
  EXPECT_FALSE(long_pattern.Match("short channel"));
}

}  // namespace
}  // namespace distri::base
