// Unit tests for ReplyWriter (resp_writer.h), run by CTest.
//
// Checks the exact bytes of every method in RESP2 and RESP3, that messages
// cannot break framing, and that every method's output reads back through
// ParseValue as the value it meant to send.

#include "protocol/resp_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "protocol/resp_parser.h"

namespace distri::protocol {

void PrintTo(const Value& v, std::ostream* os) { *os << ToDebugString(v); }

namespace {

using T = Value::Type;

// Runs `write` against a fresh writer for protocol `p` and returns the bytes.
std::string Write(int p, const std::function<void(ReplyWriter&)>& write) {
  std::string out;
  ReplyWriter w(&out, p);
  write(w);
  return out;
}

// Parses exactly one value that must fill `in`.
Value ReadBack(const std::string& in) {
  Value v;
  size_t consumed = 0;
  std::string error;
  EXPECT_EQ(ParseValue(in, &consumed, &v, &error), ParseResult::kOk)
      << testing::PrintToString(in) << " " << error;
  EXPECT_EQ(consumed, in.size()) << testing::PrintToString(in);
  return v;
}

Value Make(T type, std::string str = {}) {
  Value v;
  v.type = type;
  v.str = std::move(str);
  return v;
}
Value Int(int64_t i) {
  Value v = Make(T::kInteger);
  v.integer = i;
  return v;
}
Value Agg(T type, std::vector<Value> elements) {
  Value v = Make(type);
  v.elements = std::move(elements);
  return v;
}

TEST(ReplyWriterTest, ProtocolVersion) {
  std::string out;
  ReplyWriter w(&out, 2);
  EXPECT_EQ(w.protocol(), 2);
  w.set_protocol(3);
  EXPECT_EQ(w.protocol(), 3);
  EXPECT_EQ(w.out(), &out);
}

TEST(ReplyWriterDeathTest, RejectsUnknownProtocol) {
  std::string out;
  EXPECT_DEATH(ReplyWriter(&out, 4), "protocol");
  ReplyWriter w(&out, 3);
  EXPECT_DEATH(w.set_protocol(1), "protocol");
  EXPECT_DEATH(w.Verbatim("text", "x"), "format");
}

TEST(ReplyWriterTest, SameInBothProtocols) {
  for (int p : {2, 3}) {
    SCOPED_TRACE(p);
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Ok(); }), "+OK\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Simple("PONG"); }), "+PONG\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Simple(""); }), "+\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Error("ERR unknown command"); }),
              "-ERR unknown command\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Integer(0); }), ":0\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Integer(-17); }), ":-17\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Integer(std::numeric_limits<int64_t>::min()); }),
              ":-9223372036854775808\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Integer(std::numeric_limits<int64_t>::max()); }),
              ":9223372036854775807\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Bulk("hello"); }), "$5\r\nhello\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Bulk(""); }), "$0\r\n\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Bulk(std::string_view("a\r\n\0", 4)); }),
              std::string("$4\r\na\r\n\0\r\n", 10));
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Array(0); }), "*0\r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Array(12345); }), "*12345\r\n");
  }
}

TEST(ReplyWriterTest, Resp2Encodings) {
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Null(); }), "$-1\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.NullArray(); }), "*-1\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Map(3); }), "*6\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Set(2); }), "*2\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Push(3); }), "*3\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Double(1.5); }), "$3\r\n1.5\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Double(3); }), "$1\r\n3\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Double(HUGE_VAL); }), "$3\r\ninf\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Double(-HUGE_VAL); }), "$4\r\n-inf\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Double(std::nan("")); }), "$3\r\nnan\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Boolean(true); }), ":1\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Boolean(false); }), ":0\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.Verbatim("txt", "hi"); }), "$2\r\nhi\r\n");
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.BigNumber("-123456789012345678901234567890"); }),
            "$31\r\n-123456789012345678901234567890\r\n");
}

TEST(ReplyWriterTest, Resp3Encodings) {
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Null(); }), "_\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.NullArray(); }), "_\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Map(3); }), "%3\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Set(2); }), "~2\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Push(3); }), ">3\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Double(1.5); }), ",1.5\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Double(-0.25); }), ",-0.25\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Double(0.1); }), ",0.1\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Double(1e300); }), ",1e+300\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Double(HUGE_VAL); }), ",inf\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Double(-HUGE_VAL); }), ",-inf\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Double(-std::nan("")); }), ",nan\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Boolean(true); }), "#t\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Boolean(false); }), "#f\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Verbatim("txt", "Some string"); }),
            "=15\r\ntxt:Some string\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.Verbatim("mkd", ""); }), "=4\r\nmkd:\r\n");
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.BigNumber("1234567890123456789012"); }),
            "(1234567890123456789012\r\n");
}

TEST(ReplyWriterTest, LinesCannotBreakFraming) {
  for (int p : {2, 3}) {
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Simple("a\r\nb\nc\r"); }), "+a  b c \r\n");
    EXPECT_EQ(Write(p, [](ReplyWriter& w) { w.Error("ERR bad\r\n+OK"); }), "-ERR bad  +OK\r\n");
  }
  EXPECT_EQ(Write(3, [](ReplyWriter& w) { w.BigNumber("12\r\n3"); }), "(12  3\r\n");
}

TEST(ReplyWriterTest, AppendsToExistingOutput) {
  std::string out = "prefix";
  ReplyWriter w(&out, 3);
  w.Array(2);
  w.Integer(1);
  w.Null();
  EXPECT_EQ(out, "prefix*2\r\n:1\r\n_\r\n");
}

// Every writer method, written in both protocols, reads back through
// ParseValue as the value it stands for in that protocol.
TEST(ReplyWriterTest, RoundTripEveryMethod) {
  struct Case {
    const char* name;
    std::function<void(ReplyWriter&)> write;
    Value resp2;
    Value resp3;
  };
  Value t = Make(T::kBoolean);
  t.boolean = true;
  Value f = Make(T::kBoolean);
  auto dbl = [](double d) {
    Value v = Make(T::kDouble);
    v.dbl = d;
    return v;
  };
  Value verbatim = Make(T::kVerbatim, "line1\r\nline2");
  verbatim.format = "txt";
  const std::string binary("\0\x01\xff\r\n", 5);

  const std::vector<Case> cases = {
      {"Ok", [](ReplyWriter& w) { w.Ok(); }, Make(T::kSimpleString, "OK"),
       Make(T::kSimpleString, "OK")},
      {"Simple", [](ReplyWriter& w) { w.Simple("PONG"); }, Make(T::kSimpleString, "PONG"),
       Make(T::kSimpleString, "PONG")},
      {"Error", [](ReplyWriter& w) { w.Error("WRONGTYPE no"); }, Make(T::kError, "WRONGTYPE no"),
       Make(T::kError, "WRONGTYPE no")},
      {"Integer", [](ReplyWriter& w) { w.Integer(-42); }, Int(-42), Int(-42)},
      {"Bulk", [&](ReplyWriter& w) { w.Bulk(binary); }, Make(T::kBulkString, binary),
       Make(T::kBulkString, binary)},
      {"Null", [](ReplyWriter& w) { w.Null(); }, Value{}, Value{}},
      {"NullArray", [](ReplyWriter& w) { w.NullArray(); }, Value{}, Value{}},
      {"Array",
       [](ReplyWriter& w) {
         w.Array(2);
         w.Integer(1);
         w.Bulk("x");
       },
       Agg(T::kArray, {Int(1), Make(T::kBulkString, "x")}),
       Agg(T::kArray, {Int(1), Make(T::kBulkString, "x")})},
      {"Map",
       [](ReplyWriter& w) {
         w.Map(2);
         w.Bulk("a");
         w.Integer(1);
         w.Bulk("b");
         w.Integer(2);
       },
       Agg(T::kArray, {Make(T::kBulkString, "a"), Int(1), Make(T::kBulkString, "b"), Int(2)}),
       Agg(T::kMap, {Make(T::kBulkString, "a"), Int(1), Make(T::kBulkString, "b"), Int(2)})},
      {"Set",
       [](ReplyWriter& w) {
         w.Set(1);
         w.Bulk("m");
       },
       Agg(T::kArray, {Make(T::kBulkString, "m")}), Agg(T::kSet, {Make(T::kBulkString, "m")})},
      {"Push",
       [](ReplyWriter& w) {
         w.Push(2);
         w.Bulk("message");
         w.Bulk("hi");
       },
       Agg(T::kArray, {Make(T::kBulkString, "message"), Make(T::kBulkString, "hi")}),
       Agg(T::kPush, {Make(T::kBulkString, "message"), Make(T::kBulkString, "hi")})},
      {"Double", [](ReplyWriter& w) { w.Double(0.1 + 0.2); },
       Make(T::kBulkString, "0.30000000000000004"), dbl(0.1 + 0.2)},
      {"DoubleInf", [](ReplyWriter& w) { w.Double(-HUGE_VAL); }, Make(T::kBulkString, "-inf"),
       dbl(-HUGE_VAL)},
      {"DoubleTiny", [](ReplyWriter& w) { w.Double(5e-324); }, Make(T::kBulkString, "5e-324"),
       dbl(5e-324)},
      {"BooleanTrue", [](ReplyWriter& w) { w.Boolean(true); }, Int(1), t},
      {"BooleanFalse", [](ReplyWriter& w) { w.Boolean(false); }, Int(0), f},
      {"Verbatim", [](ReplyWriter& w) { w.Verbatim("txt", "line1\r\nline2"); },
       Make(T::kBulkString, "line1\r\nline2"), verbatim},
      {"BigNumber", [](ReplyWriter& w) { w.BigNumber("-98765432109876543210"); },
       Make(T::kBulkString, "-98765432109876543210"), Make(T::kBigNumber, "-98765432109876543210")},
      {"Nested",
       [](ReplyWriter& w) {
         w.Map(1);
         w.Simple("k");
         w.Set(2);
         w.Boolean(true);
         w.Array(1);
         w.Null();
       },
       Agg(T::kArray, {Make(T::kSimpleString, "k"), Agg(T::kArray, {Int(1), Agg(T::kArray, {Value{}})})}),
       Agg(T::kMap, {Make(T::kSimpleString, "k"), Agg(T::kSet, {t, Agg(T::kArray, {Value{}})})})},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ReadBack(Write(2, c.write)), c.resp2);
    EXPECT_EQ(ReadBack(Write(3, c.write)), c.resp3);
  }
}

TEST(ReplyWriterTest, RoundTripNan) {
  const Value v = ReadBack(Write(3, [](ReplyWriter& w) { w.Double(std::nan("")); }));
  EXPECT_EQ(v.type, T::kDouble);
  EXPECT_TRUE(std::isnan(v.dbl));
}

// Doubles read back bit-for-bit: the shortest text is still exact.
TEST(ReplyWriterTest, DoublesRoundTripExactly) {
  const std::vector<double> values = {0.0,     -0.0,   1.0 / 3, 2.0 / 3,    1e-310, 1e308,
                                      1.7976931348623157e308, 123456789.125, -7e-7, 4503599627370497.0};
  for (double d : values) {
    const Value v = ReadBack(Write(3, [d](ReplyWriter& w) { w.Double(d); }));
    EXPECT_EQ(v.dbl, d);
    EXPECT_EQ(std::signbit(v.dbl), std::signbit(d));
  }
}

// A limit stops a reply as it is built: nothing that would pass it is written,
// and nothing at all afterwards, however much the handler goes on writing.
TEST(ReplyWriterTest, LimitStopsTheReplyWhileItIsBuilt) {
  std::string out;
  ReplyWriter w(&out, 2);
  w.set_limit(1000);
  const std::string value(300, 'v');
  w.Array(100);
  for (int i = 0; i < 100; i++) w.Bulk(value);
  EXPECT_TRUE(w.overflowed());
  EXPECT_LE(out.size(), 1000u);
  EXPECT_EQ(out.size(), 6 + 3 * (6 + 300 + 2));  // the header and three whole elements
  w.Integer(1);
  w.Simple("more");
  w.Verbatim("txt", value);
  EXPECT_EQ(out.size(), 6 + 3 * (6 + 300 + 2));
}

TEST(ReplyWriterTest, NoLimitByDefault) {
  std::string out;
  ReplyWriter w(&out, 3);
  w.Bulk(std::string(1 << 20, 'x'));
  EXPECT_FALSE(w.overflowed());
  EXPECT_EQ(out.size(), (1u << 20) + 12);
}

TEST(ReplyWriterTest, BulkHeaderLeavesPayloadToTheCaller) {
  EXPECT_EQ(Write(2, [](ReplyWriter& w) { w.BulkHeader(5); }), "$5\r\n");
  std::string frame = Write(3, [](ReplyWriter& w) { w.BulkHeader(5); }) + "hello\r\n";
  EXPECT_EQ(ReadBack(frame).str, "hello");
}

}  // namespace
}  // namespace distri::protocol
