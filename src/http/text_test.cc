#include "http/text.h"

#include <gtest/gtest.h>

namespace distri::http {
namespace {

TEST(PercentDecode, DecodesEscapesAndRejectsBadOnes) {
  EXPECT_EQ(PercentDecode("a%2Fb%20c"), "a/b c");
  EXPECT_EQ(PercentDecode("a+b"), "a+b");
  EXPECT_EQ(PercentDecode("a+b", true), "a b");
  EXPECT_EQ(PercentDecode("%00"), std::string(1, '\0'));
  EXPECT_FALSE(PercentDecode("%"));
  EXPECT_FALSE(PercentDecode("%4"));
  EXPECT_FALSE(PercentDecode("%zz"));
  EXPECT_EQ(PercentEncode("a/b c~"), "a%2Fb%20c~");
  EXPECT_EQ(PercentDecode(PercentEncode("\xff<script>")), "\xff<script>");
}

TEST(ParseQuery, SplitsAndDecodes) {
  auto q = ParseQuery("prefix=a%20b&limit=10&&flag&x=1+2");
  ASSERT_TRUE(q);
  ASSERT_EQ(q->size(), 4u);
  EXPECT_EQ((*q)[0], (std::pair<std::string, std::string>{"prefix", "a b"}));
  EXPECT_EQ((*q)[2], (std::pair<std::string, std::string>{"flag", ""}));
  EXPECT_EQ((*q)[3].second, "1 2");
  EXPECT_FALSE(ParseQuery("a=%G0"));
}

TEST(Utf8, ValidatesStrictly) {
  EXPECT_TRUE(IsValidUtf8("hello é ✓ 😀"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe2\x9c"));          // truncated
}

TEST(Base64, RoundTrips) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\x00\x01"}) {
    EXPECT_EQ(Base64Decode(Base64Encode(s)), s);
  }
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_FALSE(Base64Decode("Zm8"));
  EXPECT_FALSE(Base64Decode("Z=9v"));
  EXPECT_FALSE(Base64Decode("Zm9*"));
}

TEST(JsonWriter, EscapesAndNests) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject()
      .Key("a")
      .Int(-3)
      .Key("b")
      .BeginArray()
      .String("x\"y")
      .Bool(true)
      .Null()
      .EndArray();
  w.Key("c").Double(0.1).Key("h").String("<script>&</script>\n\x01").EndObject();
  EXPECT_EQ(
      out,
      R"({"a":-3,"b":["x\"y",true,null],"c":0.1,"h":"\u003cscript\u003e\u0026\u003c/script\u003e\n\u0001"})");
}

TEST(JsonWriter, BytesFieldFallsBackToBase64) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject().BytesField("key", "ok").BytesField("value", "\xff\xfe").EndObject();
  EXPECT_EQ(out, R"({"key":"ok","value_b64":"//4="})");
}

}  // namespace
}  // namespace distri::http
