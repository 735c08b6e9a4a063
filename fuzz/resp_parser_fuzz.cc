// libFuzzer target for the RESP parsers in src/protocol/resp_parser.h.
//
// Built by fuzz/CMakeLists.txt when -DDISTRI_FUZZ=ON (clang). Each input is
// fed, with default and with tiny limits, to
//  - RequestParser in a consume loop, as a connection drains its buffer, and
//  - ParseValue in the same kind of loop,
// checking the contract rather than only looking for crashes:
//  1. kOk consumes at least one byte and never more than it was given;
//     kNeedMore and kError consume nothing; kNeedMore's hint asks for more
//     than it was given; kError has a message.
//  2. Multibulk arguments point into the input (ASan checks every byte read).
//  3. A prefix of the input gives kNeedMore or exactly the whole input's answer.
//  4. Round trips: a parsed command re-encoded with AppendCommand parses to the
//     same arguments; a parsed value re-encoded parses to the same value.
// Seeds live in fuzz/corpus/resp_parser.

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/resp_parser.h"

namespace {

using distri::protocol::ParseResult;
using distri::protocol::ParseValue;
using distri::protocol::RequestLimits;
using distri::protocol::RequestParser;
using distri::protocol::Value;
using distri::protocol::ValueLimits;

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

const RequestLimits kTinyRequest{.max_bulk_len = 8, .max_multibulk_len = 4, .max_inline_len = 16};
const ValueLimits kTinyValue{.max_bulk_len = 8, .max_elements = 4, .max_depth = 3};

// One parse outcome in comparable form.
struct Outcome {
  ParseResult result;
  size_t consumed;
  std::vector<std::string> args;  // or the value's debug string
  std::string error;
  bool operator==(const Outcome&) const = default;
};

Outcome Request(RequestParser& p, std::string_view in) {
  std::vector<std::string_view> views;
  Outcome o{};
  o.result = p.Parse(in, &o.consumed, &views);
  o.args.assign(views.begin(), views.end());
  if (o.result == ParseResult::kError) o.error = p.error();
  return o;
}

Outcome OneValue(std::string_view in, const ValueLimits& limits, Value* v) {
  Outcome o{};
  o.result = ParseValue(in, &o.consumed, v, &o.error, limits);
  if (o.result == ParseResult::kOk) o.args.push_back(ToDebugString(*v));
  if (o.result != ParseResult::kError) o.error.clear();
  return o;
}

// Prefix lengths to compare against the whole input: all of them for short
// inputs, a spread plus the edges of the first message for long ones.
std::vector<size_t> Prefixes(size_t size, size_t consumed) {
  std::vector<size_t> out;
  if (size <= 64) {
    for (size_t k = 0; k < size; ++k) out.push_back(k);
    return out;
  }
  for (size_t i = 0; i < 16; ++i) out.push_back(size * i / 16);
  if (consumed > 0) {
    out.push_back(consumed - 1);
    out.push_back(consumed);
  }
  out.push_back(size - 1);
  return out;
}

// Invariant 3: a prefix of `in` is kNeedMore, or (if it still holds the whole
// first message) the same answer.
template <typename ParseFn>
void CheckPrefixes(std::string_view in, const Outcome& whole, ParseFn parse) {
  for (size_t k : Prefixes(in.size(), whole.consumed)) {
    const Outcome part = parse(in.substr(0, k));
    if (part.result == ParseResult::kNeedMore) {
      FUZZ_CHECK(whole.result != ParseResult::kOk || k < whole.consumed);
      continue;
    }
    FUZZ_CHECK(part == whole);
  }
}

void FuzzRequests(std::string_view input, const RequestLimits& limits, bool round_trip) {
  RequestParser parser(limits);
  RequestParser prefix_parser(limits);
  RequestParser reparser(limits);
  std::string_view rest = input;
  bool first = true;
  while (!rest.empty()) {
    const Outcome o = Request(parser, rest);
    if (first) {
      CheckPrefixes(rest, o, [&](std::string_view s) { return Request(prefix_parser, s); });
      first = false;
    }
    if (o.result == ParseResult::kNeedMore) {
      FUZZ_CHECK(o.consumed == 0 && o.args.empty());
      FUZZ_CHECK(parser.needed_hint() > rest.size());
      break;
    }
    if (o.result == ParseResult::kError) {
      FUZZ_CHECK(o.consumed == 0 && !o.error.empty());
      break;
    }
    FUZZ_CHECK(o.consumed > 0 && o.consumed <= rest.size());
    size_t arg_bytes = 0;
    for (const std::string& a : o.args) arg_bytes += a.size();
    FUZZ_CHECK(arg_bytes <= o.consumed);
    if (rest[0] == '*') {
      // Multibulk arguments are views into the consumed bytes.
      std::vector<std::string_view> views;
      size_t consumed = 0;
      FUZZ_CHECK(parser.Parse(rest, &consumed, &views) == ParseResult::kOk);
      for (std::string_view v : views) {
        FUZZ_CHECK(v.data() >= rest.data() && v.data() + v.size() <= rest.data() + consumed);
      }
    }
    if (round_trip) {
      std::vector<std::string_view> views(o.args.begin(), o.args.end());
      std::string encoded;
      distri::protocol::AppendCommand(&encoded, views);
      const Outcome again = Request(reparser, encoded);
      FUZZ_CHECK(again.result == ParseResult::kOk);
      FUZZ_CHECK(again.consumed == encoded.size());
      FUZZ_CHECK(again.args == o.args);
    }
    rest.remove_prefix(o.consumed);
  }
}

// Canonical RESP3 encoding of a parsed value, for the round trip.
void Encode(const Value& v, std::string* out) {
  using T = Value::Type;
  auto header = [&](char type, size_t n) {
    out->push_back(type);
    out->append(std::to_string(n));
    out->append("\r\n");
  };
  auto line = [&](char type, const std::string& s) {
    out->push_back(type);
    out->append(s);
    out->append("\r\n");
  };
  char buf[32];
  switch (v.type) {
    case T::kSimpleString: line('+', v.str); break;
    case T::kError: line('-', v.str); break;
    case T::kInteger: line(':', std::to_string(v.integer)); break;
    case T::kBigNumber: line('(', v.str); break;
    case T::kBoolean: line('#', v.boolean ? "t" : "f"); break;
    case T::kNull: out->append("_\r\n"); break;
    case T::kDouble:
      if (v.dbl != v.dbl) {
        line(',', "nan");
      } else {
        line(',', std::string(buf, std::to_chars(buf, buf + sizeof buf, v.dbl).ptr));
      }
      break;
    case T::kBulkString:
    case T::kBulkError:
      header(v.type == T::kBulkString ? '$' : '!', v.str.size());
      out->append(v.str).append("\r\n");
      break;
    case T::kVerbatim:
      header('=', v.str.size() + 4);
      out->append(v.format).append(":").append(v.str).append("\r\n");
      break;
    case T::kArray:
    case T::kSet:
    case T::kPush:
      header(v.type == T::kArray ? '*' : v.type == T::kSet ? '~' : '>', v.elements.size());
      for (const Value& e : v.elements) Encode(e, out);
      break;
    case T::kMap:
    case T::kAttribute:
      // Maps hold 2n elements; attributes 2n plus the annotated value.
      header(v.type == T::kMap ? '%' : '|', v.elements.size() / 2);
      for (const Value& e : v.elements) Encode(e, out);
      break;
  }
}

void FuzzValues(std::string_view input, const ValueLimits& limits) {
  std::string_view rest = input;
  Value v;
  Value scratch;
  bool first = true;
  while (!rest.empty()) {
    const Outcome o = OneValue(rest, limits, &v);
    if (first) {
      CheckPrefixes(rest, o, [&](std::string_view s) { return OneValue(s, limits, &scratch); });
      first = false;
    }
    if (o.result == ParseResult::kNeedMore) {
      FUZZ_CHECK(o.consumed == 0);
      break;
    }
    if (o.result == ParseResult::kError) {
      FUZZ_CHECK(o.consumed == 0 && !o.error.empty());
      break;
    }
    FUZZ_CHECK(o.consumed > 0 && o.consumed <= rest.size());
    std::string encoded;
    Encode(v, &encoded);
    const Outcome again = OneValue(encoded, limits, &scratch);
    FUZZ_CHECK(again.result == ParseResult::kOk);
    FUZZ_CHECK(again.consumed == encoded.size());
    FUZZ_CHECK(again.args == o.args);
    rest.remove_prefix(o.consumed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  FuzzRequests(input, RequestLimits{}, /*round_trip=*/true);
  FuzzRequests(input, kTinyRequest, /*round_trip=*/false);
  FuzzValues(input, ValueLimits{});
  FuzzValues(input, kTinyValue);
  return 0;
}
