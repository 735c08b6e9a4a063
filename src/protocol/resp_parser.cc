// RESP parsing: RequestParser (client commands, the server's hot path),
// ParseValue (any RESP2/RESP3 value, for clients and tests) and AppendCommand.
// See resp_parser.h for the contract and docs/resp.md for the wire rules.
//
// Both parsers are restartable by construction rather than by state: they
// re-read the front of the buffer on every call and only ever look at bytes
// already present, so the answer for a prefix of a complete message is always
// kNeedMore, never something else. The fuzzer checks exactly that.

#include "protocol/resp_parser.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/logging.h"

namespace distri::protocol {

namespace {

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

// Longest line that can hold a length or an integer: a sign and 19 digits.
// A longer one is an error without waiting for its end.
constexpr size_t kMaxNumberLine = 20;
// Longest double line: more digits than any double needs, with room to spare.
constexpr size_t kMaxDoubleLine = 512;
// Smallest encoding of one command argument: "$0\r\n\r\n". Used to give a
// lower bound on the input a multibulk needs before it can complete.
constexpr size_t kMinArgEncoding = 6;
// Arguments reserved up front for a multibulk. More are added as they arrive,
// so a client announcing a million arguments cannot make us allocate for them.
constexpr size_t kMaxArgReserve = 1024;

size_t SatAdd(size_t a, size_t b) {
  return a > std::numeric_limits<size_t>::max() - b ? std::numeric_limits<size_t>::max() : a + b;
}

size_t SatMul(size_t a, size_t b) {
  return (b != 0 && a > std::numeric_limits<size_t>::max() / b) ? std::numeric_limits<size_t>::max()
                                                                : a * b;
}

enum class LineResult { kOk, kNeedMore, kBadEnd, kTooLong };

// Finds the line starting at *pos: bytes up to "\r\n", which must start within
// max_len bytes. kOk: *line set, *pos moved past the CRLF. kNeedMore: the CR
// (or the LF after it) has not arrived. kBadEnd: '\r' not followed by '\n'.
// kTooLong: no '\r' within max_len bytes (decided without waiting for it).
LineResult ReadLine(std::string_view in, size_t* pos, size_t max_len, std::string_view* line) {
  const size_t avail = in.size() - *pos;
  const size_t window = std::min(avail, SatAdd(max_len, 1));
  const char* start = in.data() + *pos;
  const void* cr = window == 0 ? nullptr : std::memchr(start, '\r', window);
  if (cr == nullptr) return avail > max_len ? LineResult::kTooLong : LineResult::kNeedMore;
  const size_t len = static_cast<const char*>(cr) - start;
  if (len + 1 >= avail) return LineResult::kNeedMore;
  if (start[len + 1] != '\n') return LineResult::kBadEnd;
  *line = std::string_view(start, len);
  *pos += len + 2;
  return LineResult::kOk;
}

// Strict decimal int64: optional '-', digits, no leading zeros, no "-0",
// no '+', no spaces, overflow rejected.
bool ParseInt64(std::string_view s, int64_t* out) {
  bool negative = false;
  if (!s.empty() && s[0] == '-') {
    negative = true;
    s.remove_prefix(1);
  }
  if (s.empty() || s.size() > 19) return false;
  if (s[0] == '0' && (s.size() > 1 || negative)) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');  // 19 digits cannot wrap a uint64
  }
  const uint64_t max = negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
  if (v > max) return false;
  *out = negative ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
  return true;
}

// Renders a byte for an error message: printable as itself, others as \xHH.
std::string DescribeByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string(1, c);
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string{'\\', 'x', kHex[u >> 4], kHex[u & 0xf]};
}

bool IsInlineSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// For a well-formed decimal (digits, optional '.', optional exponent) that
// does not fit a double: true if it is too large, false if too small.
// Compares the position of the first significant digit plus the exponent.
bool OverflowsUp(std::string_view s) {
  const size_t e = s.find_first_of("eE");
  const std::string_view mantissa = s.substr(0, e);
  int64_t magnitude = 0;  // digits before the point, or minus zeros after it
  const size_t first = mantissa.find_first_not_of("0.");
  if (first != std::string_view::npos) {
    const size_t point = mantissa.find('.');
    if (point == std::string_view::npos || first < point) {
      magnitude = static_cast<int64_t>((point == std::string_view::npos ? mantissa.size() : point) -
                                       first);
    } else {
      magnitude = -static_cast<int64_t>(first - point - 1);
    }
  }
  int64_t exponent = 0;
  if (e != std::string_view::npos) {
    std::string_view x = s.substr(e + 1);
    bool negative = false;
    if (!x.empty() && (x[0] == '-' || x[0] == '+')) {
      negative = x[0] == '-';
      x.remove_prefix(1);
    }
    for (char c : x) exponent = std::min<int64_t>(exponent * 10 + (c - '0'), 1'000'000);
    if (negative) exponent = -exponent;
  }
  return magnitude + exponent > 0;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

// ---------------------------------------------------------------------------
// RequestParser
// ---------------------------------------------------------------------------

RequestParser::RequestParser(RequestLimits limits) : limits_(limits) {}

ParseResult RequestParser::Fail(std::string_view message) {
  error_.assign(message);
  return ParseResult::kError;
}

ParseResult RequestParser::Parse(std::string_view input, size_t* consumed,
                                 std::vector<std::string_view>* args) {
  *consumed = 0;
  args->clear();
  needed_hint_ = 0;
  if (input.empty()) {
    needed_hint_ = 1;
    return ParseResult::kNeedMore;
  }
  const ParseResult r = input[0] == '*' ? ParseMultibulk(input, consumed, args)
                                        : ParseInline(input, consumed, args);
  if (r != ParseResult::kOk) {
    *consumed = 0;
    args->clear();
  }
  return r;
}

// "*<count>\r\n" then <count> times "$<len>\r\n<len bytes>\r\n".
ParseResult RequestParser::ParseMultibulk(std::string_view in, size_t* consumed,
                                          std::vector<std::string_view>* args) {
  size_t pos = 1;
  std::string_view line;
  LineResult lr = ReadLine(in, &pos, kMaxNumberLine, &line);
  if (lr == LineResult::kNeedMore) {
    needed_hint_ = in.size() + 1;
    return ParseResult::kNeedMore;
  }
  if (lr != LineResult::kOk) return Fail("Protocol error: invalid multibulk length");
  int64_t count = 0;
  if (!ParseInt64(line, &count) ||
      (count > 0 && static_cast<uint64_t>(count) > limits_.max_multibulk_len)) {
    return Fail(limits_.unauthenticated
                    ? "Protocol error: unauthenticated multibulk length"
                    : "Protocol error: invalid multibulk length");
  }
  if (count < 0) {
    // Redis reads a negative count ("*-10", a null array sent as a request)
    // as an empty command rather than a broken stream: the line is used up
    // and the caller skips it, as it does "*0".
    *consumed = pos;
    return ParseResult::kOk;
  }
  const size_t n = static_cast<size_t>(count);
  if (args->capacity() < std::min(n, kMaxArgReserve)) args->reserve(std::min(n, kMaxArgReserve));

  // When input runs out, the hint is where the current argument ends (if its
  // length is known) plus the smallest possible encoding of the rest.
  auto need_more = [&](size_t known_end, size_t args_left) {
    needed_hint_ = std::max(in.size() + 1, SatAdd(known_end, SatMul(args_left, kMinArgEncoding)));
    return ParseResult::kNeedMore;
  };

  for (size_t i = 0; i < n; ++i) {
    const size_t arg_start = pos;
    if (pos >= in.size()) return need_more(arg_start, n - i);
    if (in[pos] != '$') {
      return Fail("Protocol error: expected '$', got '" + DescribeByte(in[pos]) + "'");
    }
    ++pos;
    lr = ReadLine(in, &pos, kMaxNumberLine, &line);
    if (lr == LineResult::kNeedMore) return need_more(arg_start, n - i);
    if (lr != LineResult::kOk) return Fail("Protocol error: invalid bulk length");
    int64_t len = 0;
    if (!ParseInt64(line, &len) || len < 0 ||
        static_cast<uint64_t>(len) > limits_.max_bulk_len) {
      return Fail(limits_.unauthenticated && len > 0 ? "Protocol error: unauthenticated bulk length"
                                                     : "Protocol error: invalid bulk length");
    }
    const size_t ulen = static_cast<size_t>(len);
    if (in.size() - pos < SatAdd(ulen, 2)) return need_more(SatAdd(pos, ulen + 2), n - i - 1);
    if (in[pos + ulen] != '\r' || in[pos + ulen + 1] != '\n') {
      return Fail("Protocol error: expected CRLF after bulk data");
    }
    args->emplace_back(in.data() + pos, ulen);
    pos += ulen + 2;
  }
  *consumed = pos;
  return ParseResult::kOk;
}

// One line ending in "\n" (an optional "\r" before it is dropped), split on
// whitespace with quoting.
ParseResult RequestParser::ParseInline(std::string_view in, size_t* consumed,
                                       std::vector<std::string_view>* args) {
  const size_t window = std::min(in.size(), SatAdd(limits_.max_inline_len, 1));
  const void* nl = std::memchr(in.data(), '\n', window);
  if (nl == nullptr) {
    if (in.size() > limits_.max_inline_len) return Fail("Protocol error: too big inline request");
    needed_hint_ = in.size() + 1;
    return ParseResult::kNeedMore;
  }
  const size_t line_len = static_cast<const char*>(nl) - in.data();
  std::string_view line = in.substr(0, line_len);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!SplitInline(line, args)) return Fail("Protocol error: unbalanced quotes in request");
  *consumed = line_len + 1;
  return ParseResult::kOk;
}

// Redis-style splitting. Outside quotes, whitespace separates arguments. In
// double quotes, \xHH is a byte and \n \r \t \b \a the usual controls; any
// other escaped character stands for itself. In single quotes only \' is an
// escape. A quote may start mid-argument (a"b c" is one argument: ab c) but
// a closing quote must end it. Plain arguments are views into `line`; the
// rest are built in unescaped_.
bool RequestParser::SplitInline(std::string_view line, std::vector<std::string_view>* args) {
  unescaped_.clear();
  bool reserved = false;
  const size_t n = line.size();
  size_t i = 0;
  while (true) {
    while (i < n && IsInlineSpace(line[i])) ++i;
    if (i == n) return true;
    const size_t start = i;
    while (i < n && !IsInlineSpace(line[i]) && line[i] != '"' && line[i] != '\'') ++i;
    if (i == n || IsInlineSpace(line[i])) {
      args->emplace_back(line.data() + start, i - start);
      continue;
    }
    // Quoted: unescaping only shrinks, so the line length bounds all output
    // and one reservation keeps earlier views valid.
    if (!reserved) {
      if (unescaped_.capacity() < n) unescaped_.reserve(n);
      reserved = true;
    }
    const size_t out_start = unescaped_.size();
    unescaped_.append(line.data() + start, i - start);
    while (i < n && !IsInlineSpace(line[i])) {
      const char c = line[i];
      if (c != '"' && c != '\'') {
        unescaped_.push_back(c);
        ++i;
        continue;
      }
      const char quote = c;
      ++i;
      bool closed = false;
      while (i < n) {
        const char q = line[i];
        if (q == quote) {
          ++i;
          closed = true;
          break;
        }
        if (q == '\\' && quote == '"' && i + 3 < n && line[i + 1] == 'x' &&
            HexValue(line[i + 2]) >= 0 && HexValue(line[i + 3]) >= 0) {
          unescaped_.push_back(static_cast<char>(HexValue(line[i + 2]) * 16 + HexValue(line[i + 3])));
          i += 4;
        } else if (q == '\\' && quote == '"' && i + 1 < n) {
          char e = line[i + 1];
          switch (e) {
            case 'n': e = '\n'; break;
            case 'r': e = '\r'; break;
            case 't': e = '\t'; break;
            case 'b': e = '\b'; break;
            case 'a': e = '\a'; break;
            default: break;
          }
          unescaped_.push_back(e);
          i += 2;
        } else if (q == '\\' && quote == '\'' && i + 1 < n && line[i + 1] == '\'') {
          unescaped_.push_back('\'');
          i += 2;
        } else {
          unescaped_.push_back(q);
          ++i;
        }
      }
      if (!closed) return false;
      if (i < n && !IsInlineSpace(line[i])) return false;
    }
    args->emplace_back(unescaped_.data() + out_start, unescaped_.size() - out_start);
  }
}

// ---------------------------------------------------------------------------
// ParseValue
// ---------------------------------------------------------------------------

namespace {

// Reads one value from the front of the input. With out == nullptr it only
// checks framing and validity (no allocation), which ParseValue does first so
// an incomplete 100 MB reply is not rebuilt on every call.
class ValueReader {
 public:
  ValueReader(std::string_view in, const ValueLimits& limits, std::string* error)
      : in_(in), limits_(limits), error_(error) {}

  ParseResult Read(Value* out, int depth);
  size_t pos() const { return pos_; }

 private:
  ParseResult Fail(std::string_view message) {
    if (error_ != nullptr) error_->assign(message);
    return ParseResult::kError;
  }
  // Reads a line; `bad` is the error for a malformed one, `too_long` for one
  // with no CR within max_len bytes (defaults to `bad`).
  ParseResult Line(size_t max_len, std::string_view bad, std::string_view* line,
                   std::string_view too_long = {}) {
    switch (ReadLine(in_, &pos_, max_len, line)) {
      case LineResult::kOk: return ParseResult::kOk;
      case LineResult::kNeedMore: return ParseResult::kNeedMore;
      case LineResult::kBadEnd: return Fail(bad);
      case LineResult::kTooLong: break;
    }
    return Fail(too_long.empty() ? bad : too_long);
  }
  ParseResult ReadInteger(Value* out);
  ParseResult ReadDouble(Value* out);
  ParseResult ReadBulk(char type, Value* out);
  ParseResult ReadAggregate(char type, Value* out, int depth);

  std::string_view in_;
  const ValueLimits& limits_;
  std::string* error_;
  size_t pos_ = 0;
};

ParseResult ValueReader::Read(Value* out, int depth) {
  if (pos_ >= in_.size()) return ParseResult::kNeedMore;
  const char type = in_[pos_++];
  std::string_view line;
  ParseResult r;
  switch (type) {
    case '+':
    case '-':
      r = Line(limits_.max_bulk_len, "Protocol error: invalid simple string", &line,
               "Protocol error: simple string too long");
      if (r == ParseResult::kOk && out != nullptr) {
        out->type = type == '+' ? Value::Type::kSimpleString : Value::Type::kError;
        out->str.assign(line);
      }
      return r;
    case ':':
      return ReadInteger(out);
    case ',':
      return ReadDouble(out);
    case '#':
      r = Line(1, "Protocol error: invalid boolean", &line);
      if (r != ParseResult::kOk) return r;
      if (line != "t" && line != "f") return Fail("Protocol error: invalid boolean");
      if (out != nullptr) {
        out->type = Value::Type::kBoolean;
        out->boolean = line == "t";
      }
      return r;
    case '_':
      r = Line(0, "Protocol error: invalid null", &line);
      if (r == ParseResult::kOk && out != nullptr) out->type = Value::Type::kNull;
      return r;
    case '(': {
      r = Line(limits_.max_bulk_len, "Protocol error: invalid big number", &line);
      if (r != ParseResult::kOk) return r;
      std::string_view digits = line;
      if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) digits.remove_prefix(1);
      if (digits.empty() ||
          !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return Fail("Protocol error: invalid big number");
      }
      if (out != nullptr) {
        out->type = Value::Type::kBigNumber;
        out->str.assign(line);
      }
      return r;
    }
    case '$':
    case '=':
    case '!':
      return ReadBulk(type, out);
    case '*':
    case '%':
    case '~':
    case '>':
    case '|':
      return ReadAggregate(type, out, depth);
    case ';':
    case '.':
      return Fail("Protocol error: streamed types are not supported");
    default:
      return Fail("Protocol error: unexpected type byte '" + DescribeByte(type) + "'");
  }
}

ParseResult ValueReader::ReadInteger(Value* out) {
  std::string_view line;
  const ParseResult r = Line(kMaxNumberLine, "Protocol error: invalid integer", &line);
  if (r != ParseResult::kOk) return r;
  // RESP3 allows an explicit '+' on integers (never on lengths).
  if (line.size() > 1 && line[0] == '+' && line[1] != '-') line.remove_prefix(1);
  int64_t v = 0;
  if (!ParseInt64(line, &v)) return Fail("Protocol error: invalid integer");
  if (out != nullptr) {
    out->type = Value::Type::kInteger;
    out->integer = v;
  }
  return r;
}

ParseResult ValueReader::ReadDouble(Value* out) {
  std::string_view line;
  const ParseResult r = Line(kMaxDoubleLine, "Protocol error: invalid double", &line);
  if (r != ParseResult::kOk) return r;
  double d = 0;
  if (line == "inf" || line == "+inf") {
    d = kInf;
  } else if (line == "-inf") {
    d = -kInf;
  } else if (line == "nan" || line == "-nan") {
    d = std::numeric_limits<double>::quiet_NaN();
  } else {
    std::string_view s = line;
    bool negative = false;
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
      negative = s[0] == '-';
      s.remove_prefix(1);
    }
    // Require a leading digit so from_chars's own spellings ("infinity",
    // "nan(...)", a second sign) are not accepted.
    if (s.empty() || s[0] < '0' || s[0] > '9') return Fail("Protocol error: invalid double");
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (end != s.data() + s.size() || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
      return Fail("Protocol error: invalid double");
    }
    // Out of range (1e999, 1e-999) is still a well-formed number, but
    // from_chars leaves d untouched: saturate like strtod does.
    if (ec == std::errc::result_out_of_range) d = OverflowsUp(s) ? kInf : 0.0;
    if (negative) d = -d;
  }
  if (out != nullptr) {
    out->type = Value::Type::kDouble;
    out->dbl = d;
  }
  return r;
}

// '$' bulk string, '=' verbatim string, '!' bulk error: "<len>\r\n<bytes>\r\n".
ParseResult ValueReader::ReadBulk(char type, Value* out) {
  std::string_view line;
  ParseResult r = Line(kMaxNumberLine, "Protocol error: invalid bulk length", &line);
  if (r != ParseResult::kOk) return r;
  if (line == "?") return Fail("Protocol error: streamed types are not supported");
  int64_t len = 0;
  if (!ParseInt64(line, &len)) return Fail("Protocol error: invalid bulk length");
  if (len == -1 && type == '$') {  // RESP2 null bulk string
    if (out != nullptr) out->type = Value::Type::kNull;
    return ParseResult::kOk;
  }
  if (len < 0) return Fail("Protocol error: invalid bulk length");
  if (static_cast<uint64_t>(len) > limits_.max_bulk_len) {
    return Fail("Protocol error: bulk length exceeds limit");
  }
  const size_t ulen = static_cast<size_t>(len);
  if (in_.size() - pos_ < SatAdd(ulen, 2)) return ParseResult::kNeedMore;
  if (in_[pos_ + ulen] != '\r' || in_[pos_ + ulen + 1] != '\n') {
    return Fail("Protocol error: expected CRLF after bulk data");
  }
  const std::string_view data = in_.substr(pos_, ulen);
  pos_ += ulen + 2;
  if (type == '=' && (data.size() < 4 || data[3] != ':')) {
    return Fail("Protocol error: invalid verbatim string");
  }
  if (out != nullptr) {
    if (type == '=') {
      out->type = Value::Type::kVerbatim;
      out->format.assign(data.substr(0, 3));
      out->str.assign(data.substr(4));
    } else {
      out->type = type == '$' ? Value::Type::kBulkString : Value::Type::kBulkError;
      out->str.assign(data);
    }
  }
  return ParseResult::kOk;
}

// '*' array, '%' map, '~' set, '>' push, '|' attribute: "<count>\r\n" then the
// elements (2 * count for maps and attributes).
ParseResult ValueReader::ReadAggregate(char type, Value* out, int depth) {
  std::string_view line;
  ParseResult r = Line(kMaxNumberLine, "Protocol error: invalid multibulk length", &line);
  if (r != ParseResult::kOk) return r;
  if (line == "?") return Fail("Protocol error: streamed types are not supported");
  int64_t count = 0;
  if (!ParseInt64(line, &count)) return Fail("Protocol error: invalid multibulk length");
  if (count == -1 && type == '*') {  // RESP2 null array
    if (out != nullptr) out->type = Value::Type::kNull;
    return ParseResult::kOk;
  }
  if (count < 0) return Fail("Protocol error: invalid multibulk length");
  const bool paired = type == '%' || type == '|';
  const uint64_t n = static_cast<uint64_t>(count) * (paired ? 2 : 1);  // count < 2^63
  if (n > limits_.max_elements) return Fail("Protocol error: aggregate length exceeds limit");
  if (depth + 1 > limits_.max_depth) return Fail("Protocol error: nesting too deep");

  if (out != nullptr) {
    switch (type) {
      case '*': out->type = Value::Type::kArray; break;
      case '%': out->type = Value::Type::kMap; break;
      case '~': out->type = Value::Type::kSet; break;
      case '>': out->type = Value::Type::kPush; break;
      default: out->type = Value::Type::kAttribute; break;
    }
    // Only reached on the build pass, after the scan pass saw every element,
    // so n is backed by real input bytes.
    out->elements.reserve(static_cast<size_t>(n) + (type == '|' ? 1 : 0));
  }
  // An attribute annotates the value after it; that value becomes the last element.
  const uint64_t total = n + (type == '|' ? 1 : 0);
  for (uint64_t i = 0; i < total; ++i) {
    r = Read(out != nullptr ? &out->elements.emplace_back() : nullptr, depth + 1);
    if (r != ParseResult::kOk) return r;
  }
  return ParseResult::kOk;
}

void Reset(Value* v) {
  v->type = Value::Type::kNull;
  v->str.clear();
  v->integer = 0;
  v->dbl = 0;
  v->boolean = false;
  v->elements.clear();
  v->format.clear();
}

}  // namespace

ParseResult ParseValue(std::string_view input, size_t* consumed, Value* out, std::string* error,
                       const ValueLimits& limits) {
  *consumed = 0;
  ValueReader scan(input, limits, error);
  const ParseResult r = scan.Read(nullptr, 0);
  if (r != ParseResult::kOk) return r;
  Reset(out);
  ValueReader build(input, limits, error);
  const ParseResult built = build.Read(out, 0);
  CHECK(built == ParseResult::kOk && build.pos() == scan.pos()) << "scan and build passes disagree";
  *consumed = build.pos();
  return ParseResult::kOk;
}

// ---------------------------------------------------------------------------
// AppendCommand and ToDebugString
// ---------------------------------------------------------------------------

namespace {

void AppendHeader(std::string* out, char type, size_t n) {
  char buf[24];
  buf[0] = type;
  char* end = std::to_chars(buf + 1, buf + sizeof buf - 2, n).ptr;
  *end++ = '\r';
  *end++ = '\n';
  out->append(buf, end);
}

void AppendQuoted(std::string* out, std::string_view s) {
  out->push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      out->append(DescribeByte(c));
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

void AppendDebug(std::string* out, const Value& v) {
  using T = Value::Type;
  auto list = [&](size_t from, size_t to, const char* open, const char* close, bool pairs) {
    out->append(open);
    for (size_t i = from; i < to; ++i) {
      if (i > from) out->append(pairs && (i - from) % 2 == 1 ? ": " : ", ");
      AppendDebug(out, v.elements[i]);
    }
    out->append(close);
  };
  char buf[32];
  switch (v.type) {
    case T::kSimpleString: out->append("+").append(v.str); break;
    case T::kError: out->append("-").append(v.str); break;
    case T::kBulkError: out->append("!"); AppendQuoted(out, v.str); break;
    case T::kInteger:
      out->append(":").append(buf, std::to_chars(buf, buf + sizeof buf, v.integer).ptr);
      break;
    case T::kDouble:
      out->append(",").append(buf, std::to_chars(buf, buf + sizeof buf, v.dbl).ptr);
      break;
    case T::kBoolean: out->append(v.boolean ? "#t" : "#f"); break;
    case T::kBigNumber: out->append("(").append(v.str); break;
    case T::kNull: out->append("nil"); break;
    case T::kBulkString: AppendQuoted(out, v.str); break;
    case T::kVerbatim: out->append("=").append(v.format).append(":"); AppendQuoted(out, v.str); break;
    case T::kArray: list(0, v.elements.size(), "[", "]", false); break;
    case T::kSet: list(0, v.elements.size(), "~[", "]", false); break;
    case T::kPush: list(0, v.elements.size(), ">[", "]", false); break;
    case T::kMap: list(0, v.elements.size(), "{", "}", true); break;
    case T::kAttribute:
      if (v.elements.empty()) {
        out->append("|{}");
        break;
      }
      list(0, v.elements.size() - 1, "|{", "} ", true);
      AppendDebug(out, v.elements.back());
      break;
  }
}

}  // namespace

std::string ToDebugString(const Value& v) {
  std::string out;
  AppendDebug(&out, v);
  return out;
}

void AppendCommand(std::string* out, std::span<const std::string_view> args) {
  AppendHeader(out, '*', args.size());
  for (std::string_view a : args) {
    AppendHeader(out, '$', a.size());
    out->append(a);
    out->append("\r\n", 2);
  }
}

}  // namespace distri::protocol
