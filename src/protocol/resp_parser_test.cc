// Unit tests for RequestParser, ParseValue and AppendCommand (resp_parser.h).
//
// Run by CTest. Covers every RESP type, RESP2 nulls, inline quoting, every
// split point of pipelines (a prefix must give kNeedMore, then the same
// answer), malformed input and limits, and that the GET/SET path does not
// allocate once warm (counted through a replaced global operator new).

#include "protocol/resp_parser.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "protocol/resp_writer.h"

// Counts allocations made by this test binary; see HotPathDoesNotAllocate.
// noinline keeps GCC from pairing the inlined free() with operator new and
// warning about a mismatch that is not there.
static std::atomic<long> g_allocations{0};

__attribute__((noinline)) void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace distri::protocol {

// Lets GoogleTest print values in failure messages.
void PrintTo(const Value& v, std::ostream* os) { *os << ToDebugString(v); }

namespace {

using Args = std::vector<std::string>;

struct Parsed {
  ParseResult result;
  size_t consumed = 0;
  Args args;
  std::string error;
  bool operator==(const Parsed&) const = default;
};

Parsed ParseOne(std::string_view in, RequestLimits limits = {}) {
  RequestParser p(limits);
  std::vector<std::string_view> views;
  Parsed out;
  out.result = p.Parse(in, &out.consumed, &views);
  out.args.assign(views.begin(), views.end());
  if (out.result == ParseResult::kError) out.error = p.error();
  return out;
}

// Parses every command in `in`, like a connection draining its buffer.
std::vector<Parsed> ParseAll(std::string_view in, RequestParser* p) {
  std::vector<Parsed> all;
  std::vector<std::string_view> views;
  while (!in.empty()) {
    Parsed one;
    one.result = p->Parse(in, &one.consumed, &views);
    one.args.assign(views.begin(), views.end());
    if (one.result == ParseResult::kError) one.error = p->error();
    all.push_back(one);
    if (one.result != ParseResult::kOk) break;
    in.remove_prefix(one.consumed);
  }
  return all;
}

std::string Command(const std::vector<std::string_view>& args) {
  std::string out;
  AppendCommand(&out, args);
  return out;
}

void ExpectError(std::string_view in, std::string_view message, RequestLimits limits = {}) {
  const Parsed p = ParseOne(in, limits);
  EXPECT_EQ(p.result, ParseResult::kError) << "input: " << testing::PrintToString(std::string(in));
  EXPECT_EQ(p.error, message) << "input: " << testing::PrintToString(std::string(in));
  EXPECT_EQ(p.consumed, 0u);
}

// ---------------------------------------------------------------------------
// RequestParser: multibulk
// ---------------------------------------------------------------------------

TEST(RequestParserTest, UnauthenticatedLimitsAreSmallAndNamed) {
  ExpectError("*11\r\n", "Protocol error: unauthenticated multibulk length",
              kUnauthenticatedLimits);
  ExpectError("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16385\r\n",
              "Protocol error: unauthenticated bulk length", kUnauthenticatedLimits);
  Parsed p = ParseOne("*7\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n"
                      "$2\r\npw\r\n$7\r\nSETNAME\r\n$1\r\nn\r\n",
                      kUnauthenticatedLimits);
  EXPECT_EQ(p.result, ParseResult::kOk);
  // After AUTH the client switches to the ordinary limits.
  RequestParser parser(kUnauthenticatedLimits);
  parser.set_limits(RequestLimits{});
  std::string big = "*2\r\n$3\r\nGET\r\n$20000\r\n" + std::string(20000, 'k') + "\r\n";
  size_t consumed = 0;
  std::vector<std::string_view> args;
  EXPECT_EQ(parser.Parse(big, &consumed, &args), ParseResult::kOk);
  EXPECT_EQ(args[1].size(), 20000u);
}

TEST(RequestParserTest, ParsesMultibulkCommand) {
  const std::string in = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
  const Parsed p = ParseOne(in);
  ASSERT_EQ(p.result, ParseResult::kOk);
  EXPECT_EQ(p.consumed, in.size());
  EXPECT_EQ(p.args, (Args{"SET", "key", "value"}));
}

TEST(RequestParserTest, ArgsPointIntoInput) {
  const std::string in = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  RequestParser p;
  std::vector<std::string_view> args;
  size_t consumed = 0;
  ASSERT_EQ(p.Parse(in, &consumed, &args), ParseResult::kOk);
  ASSERT_EQ(args.size(), 2u);
  EXPECT_EQ(args[0].data(), in.data() + 8);
  EXPECT_EQ(args[1].data(), in.data() + 17);
}

TEST(RequestParserTest, EmptyMultibulkIsOkWithNoArgs) {
  const Parsed p = ParseOne("*0\r\n*1\r\n$4\r\nPING\r\n");
  EXPECT_EQ(p.result, ParseResult::kOk);
  EXPECT_EQ(p.consumed, 4u);
  EXPECT_TRUE(p.args.empty());
}

// Redis treats a negative multibulk count as an empty command, not an error
// (its test suite sends "*-10\r\n" and expects the connection to live on).
TEST(RequestParserTest, NegativeMultibulkIsOkWithNoArgs) {
  for (const char* count : {"*-1\r\n", "*-10\r\n", "*-9223372036854775808\r\n"}) {
    const std::string in = std::string(count) + "*1\r\n$4\r\nPING\r\n";
    const Parsed p = ParseOne(in);
    EXPECT_EQ(p.result, ParseResult::kOk) << count;
    EXPECT_EQ(p.consumed, std::string_view(count).size()) << count;
    EXPECT_TRUE(p.args.empty()) << count;
  }
  EXPECT_EQ(ParseOne("*-10\r").result, ParseResult::kNeedMore);
}

TEST(RequestParserTest, BulkIsBinarySafe) {
  const std::string value("a\r\nb\0c$*\n", 9);
  const std::string in = Command({"SET", "k", value, ""});
  const Parsed p = ParseOne(in);
  ASSERT_EQ(p.result, ParseResult::kOk);
  EXPECT_EQ(p.args, (Args{"SET", "k", value, ""}));
}

TEST(RequestParserTest, ArgsAreClearedFirst) {
  RequestParser p;
  std::vector<std::string_view> args = {"stale", "args"};
  size_t consumed = 0;
  ASSERT_EQ(p.Parse("*1\r\n$4\r\nPING\r\n", &consumed, &args), ParseResult::kOk);
  EXPECT_EQ(args.size(), 1u);
  args.push_back("stale");
  EXPECT_EQ(p.Parse("*1\r\n$4\r\nPI", &consumed, &args), ParseResult::kNeedMore);
  EXPECT_TRUE(args.empty());
  EXPECT_EQ(consumed, 0u);
}

TEST(RequestParserTest, NeedMoreOnEmptyInput) {
  RequestParser p;
  std::vector<std::string_view> args;
  size_t consumed = 7;
  EXPECT_EQ(p.Parse("", &consumed, &args), ParseResult::kNeedMore);
  EXPECT_EQ(consumed, 0u);
  EXPECT_EQ(p.needed_hint(), 1u);
}

TEST(RequestParserTest, NeededHintSkipsLargeBulk) {
  // "*1\r\n" (4) + "$1000000\r\n" (10) + 1000000 bytes + CRLF.
  const std::string header = "*1\r\n$1000000\r\n";
  std::string in = header + std::string(1000, 'x');
  RequestParser p;
  std::vector<std::string_view> args;
  size_t consumed = 0;
  ASSERT_EQ(p.Parse(in, &consumed, &args), ParseResult::kNeedMore);
  EXPECT_EQ(p.needed_hint(), header.size() + 1000000 + 2);
  in.resize(header.size() + 1000000, 'x');
  in += "\r\n";
  ASSERT_EQ(p.Parse(in, &consumed, &args), ParseResult::kOk);
  EXPECT_EQ(consumed, in.size());
  EXPECT_EQ(args[0].size(), 1000000u);
}

TEST(RequestParserTest, NeededHintCountsRemainingArgs) {
  // Two args announced, the first one's length known: at least the first
  // arg's end plus "$0\r\n\r\n" for the second.
  RequestParser p;
  std::vector<std::string_view> args;
  size_t consumed = 0;
  ASSERT_EQ(p.Parse("*2\r\n$3\r\nGE", &consumed, &args), ParseResult::kNeedMore);
  EXPECT_EQ(p.needed_hint(), 4u + 4 + 3 + 2 + 6);
  ASSERT_EQ(p.Parse("*2\r\n$3\r\nGET\r\n", &consumed, &args), ParseResult::kNeedMore);
  EXPECT_EQ(p.needed_hint(), 13u + 6);
}

// The hint is a lower bound: it never asks for more than the command needs,
// and it always asks for more than what was given.
TEST(RequestParserTest, NeededHintIsATightLowerBound) {
  const std::string in = Command({"MSET", "a", "1", "bb", std::string(300, 'v'), "", "c"});
  RequestParser p;
  std::vector<std::string_view> args;
  size_t consumed = 0;
  for (size_t k = 0; k < in.size(); ++k) {
    ASSERT_EQ(p.Parse(std::string_view(in).substr(0, k), &consumed, &args), ParseResult::kNeedMore);
    EXPECT_GT(p.needed_hint(), k);
    EXPECT_LE(p.needed_hint(), in.size()) << "prefix " << k;
  }
}

// ---------------------------------------------------------------------------
// RequestParser: pipelines and split points
// ---------------------------------------------------------------------------

std::string Pipeline() {
  std::string in;
  in += Command({"SET", "key:1", "hello world"});
  in += Command({"GET", "key:1"});
  in += "PING\r\n";
  in += Command({"MSET", "a", "", "b", std::string("\r\n\0", 3)});
  in += "*0\r\n";
  in += "set k 'quoted value' \"esc\\x41\\n\"\r\n";
  in += "\r\n";
  in += Command({"DEL", std::string(200, 'k')});
  in += "ECHO x\n";
  return in;
}

TEST(RequestParserTest, PipelineParsesInOrder) {
  RequestParser p;
  const std::vector<Parsed> all = ParseAll(Pipeline(), &p);
  ASSERT_EQ(all.size(), 9u);
  for (const Parsed& one : all) EXPECT_EQ(one.result, ParseResult::kOk);
  EXPECT_EQ(all[0].args, (Args{"SET", "key:1", "hello world"}));
  EXPECT_EQ(all[1].args, (Args{"GET", "key:1"}));
  EXPECT_EQ(all[2].args, (Args{"PING"}));
  EXPECT_EQ(all[3].args, (Args{"MSET", "a", "", "b", std::string("\r\n\0", 3)}));
  EXPECT_TRUE(all[4].args.empty());
  EXPECT_EQ(all[5].args, (Args{"set", "k", "quoted value", "escA\n"}));
  EXPECT_TRUE(all[6].args.empty());
  EXPECT_EQ(all[7].args, (Args{"DEL", std::string(200, 'k')}));
  EXPECT_EQ(all[8].args, (Args{"ECHO", "x"}));
}

// For every split point k: the first k bytes arrive, the connection parses
// what it can, then the rest arrives. The commands seen must be the same as
// parsing the whole pipeline at once.
TEST(RequestParserTest, EverySplitPointGivesSameCommands) {
  const std::string in = Pipeline();
  RequestParser whole_parser;
  const std::vector<Parsed> whole = ParseAll(in, &whole_parser);
  for (size_t k = 0; k <= in.size(); ++k) {
    RequestParser p;
    std::vector<Parsed> seen;
    std::string buffer = in.substr(0, k);
    std::vector<std::string_view> views;
    bool appended = false;
    while (true) {
      Parsed one;
      one.result = p.Parse(buffer, &one.consumed, &views);
      one.args.assign(views.begin(), views.end());
      if (one.result == ParseResult::kOk) {
        seen.push_back(one);
        buffer.erase(0, one.consumed);
        continue;
      }
      ASSERT_EQ(one.result, ParseResult::kNeedMore) << "split " << k;
      ASSERT_EQ(one.consumed, 0u);
      if (appended) break;
      buffer += in.substr(k);
      appended = true;
    }
    EXPECT_TRUE(buffer.empty()) << "split " << k;
    ASSERT_EQ(seen.size(), whole.size()) << "split " << k;
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], whole[i]) << "split " << k;
  }
}

// Byte-at-a-time delivery, the worst case for a slow client.
TEST(RequestParserTest, ByteAtATime) {
  const std::string in = Pipeline();
  RequestParser whole_parser;
  const std::vector<Parsed> whole = ParseAll(in, &whole_parser);
  RequestParser p;
  std::string buffer;
  std::vector<Parsed> seen;
  std::vector<std::string_view> views;
  for (char c : in) {
    buffer.push_back(c);
    Parsed one;
    one.result = p.Parse(buffer, &one.consumed, &views);
    if (one.result == ParseResult::kNeedMore) {
      EXPECT_GT(p.needed_hint(), buffer.size());
      continue;
    }
    ASSERT_EQ(one.result, ParseResult::kOk);
    one.args.assign(views.begin(), views.end());
    seen.push_back(one);
    buffer.erase(0, one.consumed);
  }
  EXPECT_EQ(seen, whole);
}

// Every prefix of a malformed input is either kNeedMore or the same error.
TEST(RequestParserTest, PrefixOfErrorIsNeedMoreOrSameError) {
  const std::vector<std::string> bad = {
      "*2\r\n$3\r\nGET\r\n$x\r\n", "*1\r\n$3\r\nabcde\r\n",  "*1\r\n:3\r\n",
      "*12345678901234567890123\r\n", "set \"a\r\n",             "*3\r\x01",
  };
  for (const std::string& in : bad) {
    const Parsed full = ParseOne(in);
    ASSERT_EQ(full.result, ParseResult::kError) << in;
    for (size_t k = 0; k < in.size(); ++k) {
      const Parsed p = ParseOne(std::string_view(in).substr(0, k));
      if (p.result != ParseResult::kNeedMore) {
        EXPECT_EQ(p, full) << in << " prefix " << k;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// RequestParser: malformed multibulk and limits
// ---------------------------------------------------------------------------

TEST(RequestParserTest, BadMultibulkLength) {
  const char* kMsg = "Protocol error: invalid multibulk length";
  ExpectError("*abc\r\n", kMsg);
  ExpectError("*-0\r\n", kMsg);
  ExpectError("*--1\r\n", kMsg);
  ExpectError("*+1\r\n", kMsg);
  ExpectError("* 1\r\n", kMsg);
  ExpectError("*1 \r\n", kMsg);
  ExpectError("*01\r\n", kMsg);
  ExpectError("*\r\n", kMsg);
  ExpectError("*1\rx", kMsg);                          // CR without LF
  ExpectError("*1\n$1\r\na\r\n", kMsg);                // LF alone
  ExpectError("*99999999999999999999\r\n", kMsg);      // overflows int64
  ExpectError("*123456789012345678901234567890", kMsg);  // too long to be a number
  ExpectError("*1048577\r\n", kMsg);                   // over the default limit
  ExpectError("*5\r\n", kMsg, RequestLimits{.max_multibulk_len = 4});
  EXPECT_EQ(ParseOne("*4\r\n", RequestLimits{.max_multibulk_len = 4}).result,
            ParseResult::kNeedMore);
}

TEST(RequestParserTest, BadBulkLength) {
  const char* kMsg = "Protocol error: invalid bulk length";
  ExpectError("*1\r\n$-1\r\n", kMsg);
  ExpectError("*1\r\n$abc\r\n", kMsg);
  ExpectError("*1\r\n$+3\r\nabc\r\n", kMsg);
  ExpectError("*1\r\n$ 3\r\nabc\r\n", kMsg);
  ExpectError("*1\r\n$03\r\nabc\r\n", kMsg);
  ExpectError("*1\r\n$\r\n\r\n", kMsg);
  ExpectError("*1\r\n$3\rabc", kMsg);
  ExpectError("*1\r\n$99999999999999999999\r\n", kMsg);
  ExpectError("*1\r\n$536870913\r\n", kMsg);  // 512 MiB + 1
  ExpectError("*1\r\n$11\r\nhello world\r\n", kMsg, RequestLimits{.max_bulk_len = 10});
  EXPECT_EQ(ParseOne("*1\r\n$10\r\n0123456789\r\n", RequestLimits{.max_bulk_len = 10}).result,
            ParseResult::kOk);
}

TEST(RequestParserTest, ExpectedDollar) {
  ExpectError("*2\r\n$3\r\nGET\r\nxyz\r\n", "Protocol error: expected '$', got 'x'");
  ExpectError("*1\r\n:1\r\n", "Protocol error: expected '$', got ':'");
  ExpectError("*1\r\n\r\n", "Protocol error: expected '$', got '\\x0d'");
  ExpectError(std::string_view("*1\r\n\0", 5), "Protocol error: expected '$', got '\\x00'");
}

TEST(RequestParserTest, MissingCrlfAfterBulk) {
  const char* kMsg = "Protocol error: expected CRLF after bulk data";
  ExpectError("*1\r\n$3\r\nabcd\r\n", kMsg);
  ExpectError("*1\r\n$3\r\nabc\n\r", kMsg);
  ExpectError("*1\r\n$3\r\nabc\rx", kMsg);
  EXPECT_EQ(ParseOne("*1\r\n$3\r\nabc\r").result, ParseResult::kNeedMore);
}

// ---------------------------------------------------------------------------
// RequestParser: inline commands
// ---------------------------------------------------------------------------

TEST(RequestParserTest, InlineSimple) {
  Parsed p = ParseOne("PING\r\n");
  EXPECT_EQ(p.result, ParseResult::kOk);
  EXPECT_EQ(p.consumed, 6u);
  EXPECT_EQ(p.args, (Args{"PING"}));

  p = ParseOne("GET k\nrest");
  EXPECT_EQ(p.consumed, 6u);
  EXPECT_EQ(p.args, (Args{"GET", "k"}));

  p = ParseOne("  set \t a   b  \r\n");
  EXPECT_EQ(p.args, (Args{"set", "a", "b"}));
}

TEST(RequestParserTest, InlineEmptyLineIsOkWithNoArgs) {
  Parsed p = ParseOne("\r\n");
  EXPECT_EQ(p.result, ParseResult::kOk);
  EXPECT_EQ(p.consumed, 2u);
  EXPECT_TRUE(p.args.empty());
  p = ParseOne("\n");
  EXPECT_EQ(p.consumed, 1u);
  p = ParseOne("   \t \r\n");
  EXPECT_EQ(p.result, ParseResult::kOk);
  EXPECT_TRUE(p.args.empty());
}

TEST(RequestParserTest, InlineNeedsNewline) {
  RequestParser p;
  std::vector<std::string_view> args;
  size_t consumed = 0;
  EXPECT_EQ(p.Parse("PING", &consumed, &args), ParseResult::kNeedMore);
  EXPECT_EQ(p.needed_hint(), 5u);
  EXPECT_EQ(p.Parse("PING\r", &consumed, &args), ParseResult::kNeedMore);
}

TEST(RequestParserTest, InlineQuoting) {
  EXPECT_EQ(ParseOne("set a 'b c'\r\n").args, (Args{"set", "a", "b c"}));
  EXPECT_EQ(ParseOne("set a \"b c\"\r\n").args, (Args{"set", "a", "b c"}));
  EXPECT_EQ(ParseOne(R"(echo "a\nb\tc\rd\\e\"f\x41\x7a\xZZ\q\b\a")" "\n").args,
            (Args{"echo", "a\nb\tc\rd\\e\"fAzxZZq\b\a"}));
  EXPECT_EQ(ParseOne(R"(echo "\x00\xff")" "\n").args,
            (Args{"echo", std::string("\0\xff", 2)}));
  EXPECT_EQ(ParseOne(R"(echo 'it\'s' 'a\nb' '"')" "\n").args,
            (Args{"echo", "it's", "a\\nb", "\""}));
  EXPECT_EQ(ParseOne("echo '' \"\"\n").args, (Args{"echo", "", ""}));
  // A quote may start mid-argument; the argument continues to the closing quote.
  EXPECT_EQ(ParseOne("echo a\"b c\" x'y z'\n").args, (Args{"echo", "ab c", "xy z"}));
}

TEST(RequestParserTest, InlineQuotedArgsLiveInParser) {
  RequestParser p;
  std::vector<std::string_view> args;
  size_t consumed = 0;
  std::string in = "set \"a b\" \"c\\x41\" plain 'd'\r\n";
  ASSERT_EQ(p.Parse(in, &consumed, &args), ParseResult::kOk);
  ASSERT_EQ(args.size(), 5u);
  // Unquoted args are views into the input, quoted ones are not.
  EXPECT_EQ(args[0].data(), in.data());
  EXPECT_EQ(args[3].data(), in.data() + 18);
  std::fill(in.begin(), in.end(), '#');  // the quoted copies survive the input changing
  EXPECT_EQ(args[1], "a b");
  EXPECT_EQ(args[2], "cA");
  EXPECT_EQ(args[4], "d");
}

TEST(RequestParserTest, InlineUnbalancedQuotes) {
  const char* kMsg = "Protocol error: unbalanced quotes in request";
  ExpectError("set \"a\r\n", kMsg);
  ExpectError("set 'a\r\n", kMsg);
  ExpectError("set \"a\"b\r\n", kMsg);
  ExpectError("set 'a'b\r\n", kMsg);
  ExpectError("set \"a\\\"\r\n", kMsg);  // the only quote is escaped
  ExpectError("\"\n", kMsg);
  ExpectError("echo don\"'\"t\n", kMsg);  // a closing quote must end the argument
}

TEST(RequestParserTest, InlineTooBig) {
  const char* kMsg = "Protocol error: too big inline request";
  const RequestLimits limits{.max_inline_len = 16};
  ExpectError(std::string(17, 'a'), kMsg, limits);         // no newline yet, already too long
  ExpectError(std::string(17, 'a') + "\n", kMsg, limits);
  ExpectError(std::string(16, 'a') + "\r\n", kMsg, limits);  // the CR counts
  EXPECT_EQ(ParseOne(std::string(16, 'a'), limits).result, ParseResult::kNeedMore);
  EXPECT_EQ(ParseOne(std::string(16, 'a') + "\n", limits).result, ParseResult::kOk);
  EXPECT_EQ(ParseOne(std::string(15, 'a') + "\r\n", limits).result, ParseResult::kOk);
  ExpectError(std::string(64 * 1024 + 1, 'x'), kMsg);  // default limit
}

TEST(RequestParserTest, AppendCommandRoundTrip) {
  const std::vector<std::string_view> args = {"HSET", "h", "f", std::string_view("\0\r\n", 3)};
  std::string out;
  AppendCommand(&out, args);
  EXPECT_EQ(out, std::string("*4\r\n$4\r\nHSET\r\n$1\r\nh\r\n$1\r\nf\r\n$3\r\n\0\r\n\r\n", 37));
  EXPECT_EQ(ParseOne(out).args, (Args{"HSET", "h", "f", std::string("\0\r\n", 3)}));
  out.clear();
  AppendCommand(&out, {});
  EXPECT_EQ(out, "*0\r\n");
}

// The server's GET/SET path: parse a command, write a reply. Once the args
// vector and output buffer have grown, no call may allocate.
TEST(RequestParserTest, HotPathDoesNotAllocate) {
  const std::string set = Command({"SET", "key:000001", std::string(64, 'v')});
  const std::string get = Command({"GET", "key:000001"});
  std::string pipeline;
  for (int i = 0; i < 50; ++i) pipeline += set + get;
  RequestParser p;
  std::vector<std::string_view> args;
  std::string out;
  out.reserve(1 << 16);
  ReplyWriter w(&out, 2);
  auto run = [&] {
    out.clear();
    std::string_view in = pipeline;
    size_t consumed = 0;
    while (!in.empty()) {
      ASSERT_EQ(p.Parse(in, &consumed, &args), ParseResult::kOk);
      if (args.size() == 3) {
        w.Ok();
      } else {
        w.Bulk(args[1]);
      }
      w.Integer(12345);
      in.remove_prefix(consumed);
    }
  };
  run();  // warm-up
  const long before = g_allocations.load();
  for (int i = 0; i < 100; ++i) run();
  EXPECT_EQ(g_allocations.load() - before, 0);
}

// ---------------------------------------------------------------------------
// ParseValue
// ---------------------------------------------------------------------------

Value Parse(std::string_view in) {
  Value v;
  size_t consumed = 0;
  std::string error;
  const ParseResult r = ParseValue(in, &consumed, &v, &error);
  EXPECT_EQ(r, ParseResult::kOk) << testing::PrintToString(std::string(in)) << " error: " << error;
  EXPECT_EQ(consumed, in.size()) << testing::PrintToString(std::string(in));
  return v;
}

std::string ValueError(std::string_view in, ValueLimits limits = {}) {
  Value v;
  size_t consumed = 99;
  std::string error;
  const ParseResult r = ParseValue(in, &consumed, &v, &error, limits);
  EXPECT_EQ(r, ParseResult::kError) << testing::PrintToString(std::string(in));
  EXPECT_EQ(consumed, 0u);
  return error;
}

ParseResult ValueResult(std::string_view in, ValueLimits limits = {}) {
  Value v;
  size_t consumed = 0;
  std::string error;
  return ParseValue(in, &consumed, &v, &error, limits);
}

Value Str(Value::Type t, std::string s) {
  Value v;
  v.type = t;
  v.str = std::move(s);
  return v;
}
Value Bulk(std::string s) { return Str(Value::Type::kBulkString, std::move(s)); }
Value Int(int64_t i) {
  Value v;
  v.type = Value::Type::kInteger;
  v.integer = i;
  return v;
}
Value Agg(Value::Type t, std::vector<Value> elements) {
  Value v;
  v.type = t;
  v.elements = std::move(elements);
  return v;
}

TEST(ParseValueTest, Scalars) {
  EXPECT_EQ(Parse("+OK\r\n"), Str(Value::Type::kSimpleString, "OK"));
  EXPECT_EQ(Parse("+\r\n"), Str(Value::Type::kSimpleString, ""));
  EXPECT_EQ(Parse("-ERR bad thing\r\n"), Str(Value::Type::kError, "ERR bad thing"));
  EXPECT_EQ(Parse("$5\r\nhello\r\n"), Bulk("hello"));
  EXPECT_EQ(Parse("$0\r\n\r\n"), Bulk(""));
  EXPECT_EQ(Parse(std::string("$4\r\n\r\n\0x\r\n", 10)), Bulk(std::string("\r\n\0x", 4)));
  EXPECT_EQ(Parse("!21\r\nSYNTAX invalid syntax\r\n"),
            Str(Value::Type::kBulkError, "SYNTAX invalid syntax"));
  EXPECT_EQ(Parse("(3492890328409238509324850943850943825024385\r\n"),
            Str(Value::Type::kBigNumber, "3492890328409238509324850943850943825024385"));
  EXPECT_EQ(Parse("(-12\r\n").str, "-12");

  Value verbatim = Parse("=15\r\ntxt:Some string\r\n");
  EXPECT_EQ(verbatim.type, Value::Type::kVerbatim);
  EXPECT_EQ(verbatim.format, "txt");
  EXPECT_EQ(verbatim.str, "Some string");
  EXPECT_EQ(Parse("=4\r\nmkd:\r\n").str, "");
}

TEST(ParseValueTest, Integers) {
  EXPECT_EQ(Parse(":0\r\n"), Int(0));
  EXPECT_EQ(Parse(":-42\r\n"), Int(-42));
  EXPECT_EQ(Parse(":+7\r\n"), Int(7));  // RESP3 allows an explicit sign
  EXPECT_EQ(Parse(":9223372036854775807\r\n"), Int(std::numeric_limits<int64_t>::max()));
  EXPECT_EQ(Parse(":-9223372036854775808\r\n"), Int(std::numeric_limits<int64_t>::min()));
  const char* kMsg = "Protocol error: invalid integer";
  EXPECT_EQ(ValueError(":9223372036854775808\r\n"), kMsg);
  EXPECT_EQ(ValueError(":-9223372036854775809\r\n"), kMsg);
  EXPECT_EQ(ValueError(":99999999999999999999\r\n"), kMsg);
  EXPECT_EQ(ValueError(":\r\n"), kMsg);
  EXPECT_EQ(ValueError(": 1\r\n"), kMsg);
  EXPECT_EQ(ValueError(":1.5\r\n"), kMsg);
  EXPECT_EQ(ValueError(":01\r\n"), kMsg);
  EXPECT_EQ(ValueError(":-0\r\n"), kMsg);
  EXPECT_EQ(ValueError(":+-1\r\n"), kMsg);
  EXPECT_EQ(ValueError(":+\r\n"), kMsg);
  EXPECT_EQ(ValueError(":1\r\r\n"), kMsg);
}

TEST(ParseValueTest, Doubles) {
  EXPECT_EQ(Parse(",1.5\r\n").dbl, 1.5);
  EXPECT_EQ(Parse(",-2\r\n").dbl, -2);
  EXPECT_EQ(Parse(",+2.5e3\r\n").dbl, 2500);
  EXPECT_EQ(Parse(",1E-2\r\n").dbl, 0.01);
  EXPECT_EQ(Parse(",0.30000000000000004\r\n").dbl, 0.1 + 0.2);
  EXPECT_EQ(Parse(",inf\r\n").dbl, std::numeric_limits<double>::infinity());
  EXPECT_EQ(Parse(",+inf\r\n").dbl, std::numeric_limits<double>::infinity());
  EXPECT_EQ(Parse(",-inf\r\n").dbl, -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(Parse(",nan\r\n").dbl));
  EXPECT_EQ(Parse(",1e999\r\n").dbl, std::numeric_limits<double>::infinity());
  EXPECT_EQ(Parse(",-1e999\r\n").dbl, -std::numeric_limits<double>::infinity());
  EXPECT_EQ(Parse(",1e-999\r\n").dbl, 0.0);
  EXPECT_EQ(Parse(",0.00000001e-400\r\n").dbl, 0.0);
  EXPECT_EQ(Parse(",1" + std::string(400, '0') + "e-5\r\n").dbl,
            std::numeric_limits<double>::infinity());
  EXPECT_EQ(Parse(",0." + std::string(400, '0') + "1e405\r\n").dbl, 1e4);
  EXPECT_EQ(Parse(",4.9e-324\r\n").dbl, std::numeric_limits<double>::denorm_min());
  EXPECT_EQ(Parse(",1.5\r\n").type, Value::Type::kDouble);
  const char* kMsg = "Protocol error: invalid double";
  EXPECT_EQ(ValueError(",\r\n"), kMsg);
  EXPECT_EQ(ValueError(",abc\r\n"), kMsg);
  EXPECT_EQ(ValueError(",infinity\r\n"), kMsg);
  EXPECT_EQ(ValueError(",1.5x\r\n"), kMsg);
  EXPECT_EQ(ValueError(", 1\r\n"), kMsg);
  EXPECT_EQ(ValueError(",--1\r\n"), kMsg);
  EXPECT_EQ(ValueError(",.5\r\n"), kMsg);
  EXPECT_EQ(ValueError("," + std::string(600, '1') + "\r\n"), kMsg);
}

TEST(ParseValueTest, BooleansAndNulls) {
  Value t = Parse("#t\r\n");
  EXPECT_EQ(t.type, Value::Type::kBoolean);
  EXPECT_TRUE(t.boolean);
  EXPECT_FALSE(Parse("#f\r\n").boolean);
  EXPECT_EQ(ValueError("#x\r\n"), "Protocol error: invalid boolean");
  EXPECT_EQ(ValueError("#tt\r\n"), "Protocol error: invalid boolean");
  EXPECT_EQ(ValueError("#\r\n"), "Protocol error: invalid boolean");

  EXPECT_EQ(Parse("_\r\n"), Value{});
  EXPECT_EQ(Parse("$-1\r\n"), Value{});  // RESP2 null bulk string
  EXPECT_EQ(Parse("*-1\r\n"), Value{});  // RESP2 null array
  EXPECT_EQ(ValueError("_x\r\n"), "Protocol error: invalid null");
  EXPECT_EQ(ValueError("%-1\r\n"), "Protocol error: invalid multibulk length");
  EXPECT_EQ(ValueError("~-1\r\n"), "Protocol error: invalid multibulk length");
  EXPECT_EQ(ValueError("!-1\r\n"), "Protocol error: invalid bulk length");
  EXPECT_EQ(ValueError("$-2\r\n"), "Protocol error: invalid bulk length");
  EXPECT_EQ(ValueError("*-2\r\n"), "Protocol error: invalid multibulk length");
}

TEST(ParseValueTest, Aggregates) {
  using T = Value::Type;
  EXPECT_EQ(Parse("*0\r\n"), Agg(T::kArray, {}));
  EXPECT_EQ(Parse("*3\r\n:1\r\n$1\r\na\r\n_\r\n"), Agg(T::kArray, {Int(1), Bulk("a"), Value{}}));
  EXPECT_EQ(Parse("*2\r\n*1\r\n:1\r\n*-1\r\n"), Agg(T::kArray, {Agg(T::kArray, {Int(1)}), Value{}}));
  EXPECT_EQ(Parse("%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n"),
            Agg(T::kMap, {Str(T::kSimpleString, "a"), Int(1), Str(T::kSimpleString, "b"), Int(2)}));
  EXPECT_EQ(Parse("~2\r\n$1\r\nx\r\n$1\r\ny\r\n"), Agg(T::kSet, {Bulk("x"), Bulk("y")}));
  EXPECT_EQ(Parse(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
            Agg(T::kPush, {Bulk("message"), Bulk("ch"), Bulk("hi")}));
}

TEST(ParseValueTest, Attributes) {
  using T = Value::Type;
  // Top level: the attribute wraps the reply it annotates.
  const Value v = Parse("|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:2\r\n");
  ASSERT_EQ(v.type, T::kAttribute);
  ASSERT_EQ(v.elements.size(), 3u);
  EXPECT_EQ(v.elements[0], Str(T::kSimpleString, "key-popularity"));
  EXPECT_EQ(v.elements[1].type, T::kMap);
  EXPECT_EQ(v.elements[2], Agg(T::kArray, {Int(2)}));
  // Inside an array the attribute and its value count as one element.
  const Value a = Parse("*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n");
  ASSERT_EQ(a.elements.size(), 2u);
  EXPECT_EQ(a.elements[0].type, T::kAttribute);
  EXPECT_EQ(a.elements[0].elements.back(), Int(1));
  EXPECT_EQ(a.elements[1], Int(2));
  EXPECT_EQ(ToDebugString(a), "[|{+ttl: :3600} :1, :2]");
  // An attribute with nothing after it yet is incomplete.
  EXPECT_EQ(ValueResult("|1\r\n+a\r\n+b\r\n"), ParseResult::kNeedMore);
}

TEST(ParseValueTest, ToDebugString) {
  EXPECT_EQ(ToDebugString(Parse("*4\r\n+OK\r\n$2\r\na\"\r\n_\r\n%1\r\n:1\r\n,1.5\r\n")),
            "[+OK, \"a\\\"\", nil, {:1: ,1.5}]");
  EXPECT_EQ(ToDebugString(Parse("~1\r\n#t\r\n")), "~[#t]");
  EXPECT_EQ(ToDebugString(Parse("=6\r\ntxt:\x01z\r\n")), "=txt:\"\\x01z\"");
}

TEST(ParseValueTest, StreamedTypesRejected) {
  const char* kMsg = "Protocol error: streamed types are not supported";
  EXPECT_EQ(ValueError("$?\r\n;4\r\nHell\r\n;0\r\n"), kMsg);
  EXPECT_EQ(ValueError("*?\r\n:1\r\n.\r\n"), kMsg);
  EXPECT_EQ(ValueError("%?\r\n"), kMsg);
  EXPECT_EQ(ValueError("~?\r\n"), kMsg);
  EXPECT_EQ(ValueError(";4\r\nHell\r\n"), kMsg);
  EXPECT_EQ(ValueError(".\r\n"), kMsg);
}

TEST(ParseValueTest, Malformed) {
  EXPECT_EQ(ValueError("?\r\n"), "Protocol error: unexpected type byte '?'");
  EXPECT_EQ(ValueError("\x80"), "Protocol error: unexpected type byte '\\x80'");
  EXPECT_EQ(ValueError("PING\r\n"), "Protocol error: unexpected type byte 'P'");
  EXPECT_EQ(ValueError("$3\r\nabcd\r\n"), "Protocol error: expected CRLF after bulk data");
  EXPECT_EQ(ValueError("$3\r\nabc\n\n"), "Protocol error: expected CRLF after bulk data");
  EXPECT_EQ(ValueError("$x\r\n"), "Protocol error: invalid bulk length");
  EXPECT_EQ(ValueError("$01\r\na\r\n"), "Protocol error: invalid bulk length");
  EXPECT_EQ(ValueError("$1\ra"), "Protocol error: invalid bulk length");
  EXPECT_EQ(ValueError("$" + std::string(30, '1')), "Protocol error: invalid bulk length");
  EXPECT_EQ(ValueError("*1x\r\n"), "Protocol error: invalid multibulk length");
  EXPECT_EQ(ValueError("*2\r\n:1\r\n?\r\n"), "Protocol error: unexpected type byte '?'");
  EXPECT_EQ(ValueError("=3\r\ntxt\r\n"), "Protocol error: invalid verbatim string");
  EXPECT_EQ(ValueError("=5\r\ntxt;x\r\n"), "Protocol error: invalid verbatim string");
  EXPECT_EQ(ValueError("(12a\r\n"), "Protocol error: invalid big number");
  EXPECT_EQ(ValueError("(\r\n"), "Protocol error: invalid big number");
  EXPECT_EQ(ValueError("(-\r\n"), "Protocol error: invalid big number");
  EXPECT_EQ(ValueError("+OK\rx"), "Protocol error: invalid simple string");
  EXPECT_EQ(ValueError("-ERR\r\r\n"), "Protocol error: invalid simple string");
}

TEST(ParseValueTest, NeedMore) {
  const std::vector<std::string> partial = {
      "",      "+OK",        "+OK\r",        ":12",          "$5\r\nhel", "$5\r\nhello\r",
      "*2\r\n", "*2\r\n:1\r\n", "%1\r\n+a\r\n", ",1.5",         "#t\r",      "_",
      "=15\r\ntxt:Some", "(123", "*1\r\n*1\r\n*1\r\n",
  };
  for (const std::string& in : partial) {
    Value v = Int(5);
    size_t consumed = 9;
    std::string error;
    EXPECT_EQ(ParseValue(in, &consumed, &v, &error), ParseResult::kNeedMore) << in;
    EXPECT_EQ(consumed, 0u);
    EXPECT_EQ(v, Int(5)) << "out is untouched until a whole value is there";
  }
}

TEST(ParseValueTest, Limits) {
  const ValueLimits small{.max_bulk_len = 4, .max_elements = 3, .max_depth = 2};
  EXPECT_EQ(ValueResult("$4\r\nabcd\r\n", small), ParseResult::kOk);
  EXPECT_EQ(ValueError("$5\r\nabcde\r\n", small), "Protocol error: bulk length exceeds limit");
  EXPECT_EQ(ValueError("=9\r\ntxt:abcde\r\n", small), "Protocol error: bulk length exceeds limit");
  EXPECT_EQ(ValueError("+abcde\r\n", small), "Protocol error: simple string too long");
  EXPECT_EQ(ValueResult("+abcd\r\n", small), ParseResult::kOk);
  EXPECT_EQ(ValueResult("*3\r\n:1\r\n:2\r\n:3\r\n", small), ParseResult::kOk);
  EXPECT_EQ(ValueError("*4\r\n", small), "Protocol error: aggregate length exceeds limit");
  EXPECT_EQ(ValueError("%2\r\n", small), "Protocol error: aggregate length exceeds limit");
  EXPECT_EQ(ValueError("*9223372036854775807\r\n", small),
            "Protocol error: aggregate length exceeds limit");
  EXPECT_EQ(ValueError("%4611686018427387904\r\n"), "Protocol error: aggregate length exceeds limit");
  EXPECT_EQ(ValueResult("*1\r\n*1\r\n:1\r\n", small), ParseResult::kOk);
  EXPECT_EQ(ValueError("*1\r\n*1\r\n*1\r\n:1\r\n", small), "Protocol error: nesting too deep");
  // An attribute is a level; the value it annotates is inside it.
  EXPECT_EQ(ValueResult("*1\r\n|1\r\n:1\r\n:1\r\n:1\r\n", small), ParseResult::kOk);
  EXPECT_EQ(ValueError("*1\r\n|1\r\n:1\r\n:1\r\n*0\r\n", small), "Protocol error: nesting too deep");
}

TEST(ParseValueTest, DefaultDepthLimit) {
  std::string ok;
  for (int i = 0; i < 64; ++i) ok += "*1\r\n";
  EXPECT_EQ(ValueResult(ok + ":1\r\n"), ParseResult::kOk);
  EXPECT_EQ(ValueError("*1\r\n" + ok + ":1\r\n"), "Protocol error: nesting too deep");
  // Deep nesting is refused before reading further: no unbounded recursion.
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "*1\r\n";
  EXPECT_EQ(ValueError(deep), "Protocol error: nesting too deep");
}

TEST(ParseValueTest, HugeCountWithLittleInputDoesNotAllocate) {
  const long before = g_allocations.load();
  EXPECT_EQ(ValueResult("*1000000\r\n:1\r\n:2\r\n"), ParseResult::kNeedMore);
  EXPECT_LT(g_allocations.load() - before, 5);
}

// A sequence of values of every type, for split-point tests.
std::string ValueStream() {
  return "+OK\r\n-ERR x\r\n:-5\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n_\r\n,3.25\r\n#f\r\n(99\r\n"
         "=7\r\ntxt:abc\r\n!3\r\nERR\r\n*2\r\n%1\r\n+k\r\n~1\r\n:1\r\n>1\r\n$0\r\n\r\n"
         "|1\r\n+a\r\n+b\r\n:7\r\n*0\r\n";
}

TEST(ParseValueTest, EverySplitPointGivesSameValues) {
  const std::string in = ValueStream();
  std::vector<Value> whole;
  for (std::string_view rest = in; !rest.empty();) {
    Value v;
    size_t consumed = 0;
    std::string error;
    ASSERT_EQ(ParseValue(rest, &consumed, &v, &error), ParseResult::kOk) << error;
    whole.push_back(v);
    rest.remove_prefix(consumed);
  }
  ASSERT_EQ(whole.size(), 15u);
  for (size_t k = 0; k <= in.size(); ++k) {
    std::string buffer = in.substr(0, k);
    std::vector<Value> seen;
    bool appended = false;
    while (true) {
      Value v;
      size_t consumed = 0;
      std::string error;
      const ParseResult r = ParseValue(buffer, &consumed, &v, &error);
      if (r == ParseResult::kOk) {
        seen.push_back(v);
        buffer.erase(0, consumed);
        continue;
      }
      ASSERT_EQ(r, ParseResult::kNeedMore) << "split " << k << ": " << error;
      if (appended) break;
      buffer += in.substr(k);
      appended = true;
    }
    EXPECT_EQ(seen, whole) << "split " << k;
  }
}

TEST(ParseValueTest, ParsesCommandsToo) {
  const std::string cmd = Command({"GET", "k"});
  EXPECT_EQ(Parse(cmd), Agg(Value::Type::kArray, {Bulk("GET"), Bulk("k")}));
}

TEST(ParseValueTest, NullErrorPointerIsAllowed) {
  Value v;
  size_t consumed = 0;
  EXPECT_EQ(ParseValue("?", &consumed, &v, nullptr), ParseResult::kError);
}

}  // namespace
}  // namespace distri::protocol
