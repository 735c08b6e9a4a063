// Redis-exact number parsing and formatting, and glob matching.

#include "base/strings.h"

#include <gtest/gtest.h>

#include <cmath>

namespace distri::base {
namespace {

TEST(StringsTest, ParseInt64) {
  int64_t v;
  EXPECT_TRUE(ParseInt64("0", &v) && v == 0);
  EXPECT_TRUE(ParseInt64("-9223372036854775808", &v) && v == INT64_MIN);
  EXPECT_TRUE(ParseInt64("9223372036854775807", &v) && v == INT64_MAX);
  for (const char* bad : {"", "-", "+1", " 1", "1 ", "01", "-0", "9223372036854775808", "1e3", "0x10"}) {
    EXPECT_FALSE(ParseInt64(bad, &v)) << bad;
  }
}

TEST(StringsTest, LongDouble) {
  long double v;
  EXPECT_TRUE(ParseLongDouble("10.5", &v));
  EXPECT_EQ(FormatLongDouble(v + 0.1L), "10.6");
  EXPECT_EQ(FormatLongDouble(3.0L), "3");
  EXPECT_EQ(FormatLongDouble(-0.0L), "0");
  EXPECT_TRUE(ParseLongDouble("5.0e3", &v));
  EXPECT_EQ(FormatLongDouble(v), "5000");
  for (const char* bad : {"", "abc", " 1", "1 ", "nan", "1e99999", "1e-99999"}) {
    EXPECT_FALSE(ParseLongDouble(bad, &v)) << bad;
  }
  // Infinity parses (as in Redis), so INCRBYFLOAT can say why it refuses it.
  EXPECT_TRUE(ParseLongDouble("inf", &v));
  EXPECT_TRUE(std::isinf(v));
  EXPECT_TRUE(ParseLongDouble("-inf", &v));
}

TEST(StringsTest, Glob) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("h?llo", "hello"));
  EXPECT_TRUE(GlobMatch("h*llo", "heeeello"));
  EXPECT_TRUE(GlobMatch("h[ae]llo", "hallo"));
  EXPECT_FALSE(GlobMatch("h[ae]llo", "hillo"));
  EXPECT_TRUE(GlobMatch("h[^e]llo", "hallo"));
  EXPECT_FALSE(GlobMatch("h[^e]llo", "hello"));
  EXPECT_TRUE(GlobMatch("h[a-b]llo", "hbllo"));
  EXPECT_TRUE(GlobMatch("a\\*b", "a*b"));
  EXPECT_FALSE(GlobMatch("a\\*b", "axb"));
  EXPECT_TRUE(GlobMatch("user:*:name", "user:42:name"));
  EXPECT_FALSE(GlobMatch("user:*:name", "user:42:age"));
  EXPECT_TRUE(GlobMatch("HELLO", "hello", true));
  // Pathological pattern stays fast.
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*a*a*b", std::string(5000, 'a')));
}

}  // namespace
}  // namespace distri::base
