// RESP2/RESP3 parsing: client commands (RequestParser) and general values (ParseValue).
//
// The server's connection code (src/net) feeds the bytes it has read into
// RequestParser::Parse and gets back one command at a time as string_views into
// its own buffer; the client library, the CLI and the tests use ParseValue to
// read replies. Nothing here does I/O or keeps bytes between calls: every call
// looks at the front of the buffer it is given and says Ok (with how many bytes
// it used), NeedMore (nothing used), or Error (the connection should reply with
// the message and close). That makes the parsers easy to unit-test and fuzz
// (fuzz/resp_parser_fuzz.cc). Wire details, limits and error messages:
// docs/resp.md.
//
// Thread-safety: a RequestParser is used by one connection at a time (it has
// scratch buffers); ParseValue and AppendCommand are free functions with no
// shared state.

#ifndef DISTRI_PROTOCOL_RESP_PARSER_H_
#define DISTRI_PROTOCOL_RESP_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace distri::protocol {

enum class ParseResult { kOk, kNeedMore, kError };

// Bounds on what a client may send; exceeding one is a protocol error.
struct RequestLimits {
  size_t max_bulk_len = 512ull * 1024 * 1024;  // bytes in one argument
  size_t max_multibulk_len = 1024 * 1024;      // arguments in one command
  size_t max_inline_len = 64 * 1024;           // bytes in one inline line (before '\n')
  // For a client that has not authenticated: errors say "unauthenticated
  // multibulk/bulk length", as Redis's do.
  bool unauthenticated = false;
};

// What a client may send before AUTH when a password is set (Redis's limits
// since CVE-2021-32675): enough for AUTH and HELLO ... AUTH ..., too little
// for an unauthenticated peer to make the server buffer much.
inline constexpr RequestLimits kUnauthenticatedLimits{16 * 1024, 10, 16 * 1024, true};

// Parses client commands: RESP arrays of bulk strings ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
// and inline commands typed into telnet or redis-cli ("set a 'b c'\r\n").
class RequestParser {
 public:
  explicit RequestParser(RequestLimits limits = {});

  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses one command from the front of `input`.
  //  kOk: *consumed = bytes used (> 0); *args (cleared first) holds the
  //       arguments. They point into `input`, except inline arguments written
  //       with quotes, which point into this parser and stay valid until the
  //       next Parse call. An empty inline line, "*0\r\n" and a negative
  //       count ("*-10\r\n", as Redis) yield no args; the caller skips them.
  //  kNeedMore: *consumed = 0; needed_hint() is the smallest total input size
  //       worth calling again with (always > input.size()).
  //  kError: *consumed = 0; error() holds a message such as
  //       "Protocol error: invalid bulk length". The caller replies
  //       "-ERR <message>" and closes the connection: the stream cannot be
  //       resynchronised.
  // Results never depend on where the input was split: a prefix of a
  // complete command yields kNeedMore, never a different answer.
  ParseResult Parse(std::string_view input, size_t* consumed, std::vector<std::string_view>* args);

  const std::string& error() const { return error_; }
  size_t needed_hint() const { return needed_hint_; }
  const RequestLimits& limits() const { return limits_; }
  // New limits from the next Parse on (a client that authenticated).
  void set_limits(const RequestLimits& limits) { limits_ = limits; }

 private:
  ParseResult ParseMultibulk(std::string_view input, size_t* consumed,
                             std::vector<std::string_view>* args);
  ParseResult ParseInline(std::string_view input, size_t* consumed,
                          std::vector<std::string_view>* args);
  // Splits one inline line into arguments, Redis-style quoting.
  bool SplitInline(std::string_view line, std::vector<std::string_view>* args);
  ParseResult Fail(std::string_view message);

  RequestLimits limits_;
  std::string error_;
  size_t needed_hint_ = 0;
  // Unescaped copies of quoted inline arguments. Reserved to the line length
  // before use, so appending never reallocates and views into it stay valid.
  std::string unescaped_;
};

// A general RESP2/RESP3 value (what a client reads).
struct Value {
  enum class Type {
    kSimpleString,  // +str
    kError,         // -str
    kInteger,       // :integer
    kBulkString,    // $str
    kNull,          // _ (also RESP2 $-1 and *-1)
    kArray,         // *elements
    kMap,           // %elements = flattened key,value pairs
    kSet,           // ~elements
    kPush,          // >elements
    kDouble,        // ,dbl
    kBoolean,       // #boolean
    kBigNumber,     // (str = the digits, with an optional leading '-' or '+')
    kVerbatim,      // =str (text only), format = "txt"/"mkd"
    kBulkError,     // !str
    kAttribute,     // |elements = flattened key,value pairs, then the value they annotate
  };
  Type type = Type::kNull;
  std::string str;
  int64_t integer = 0;
  double dbl = 0;
  bool boolean = false;
  // Arrays, sets, pushes; maps as flattened key,value pairs. An attribute
  // holds its 2n key,value pairs followed by one more element: the value the
  // attribute was attached to (so an attribute inside an array still counts as
  // one element of that array).
  std::vector<Value> elements;
  std::string format;  // kVerbatim only: the three-byte format, e.g. "txt"

  friend bool operator==(const Value&, const Value&) = default;
};

// Readable one-line rendering, e.g. [1, "a", nil] or {"k": 1.5}; for tests and the CLI.
std::string ToDebugString(const Value& v);

struct ValueLimits {
  size_t max_bulk_len = 512ull * 1024 * 1024;  // bytes in one string (any kind)
  size_t max_elements = 1024 * 1024;           // values held by one aggregate (2n for maps)
  int max_depth = 64;                          // nested aggregates (a top-level array is 1)
};

// Parses one RESP2 or RESP3 value from the front of `input`. Results as for
// RequestParser::Parse: kOk fills *out and *consumed; kNeedMore sets
// *consumed = 0; kError sets *consumed = 0 and *error. Streamed strings and
// aggregates ("$?", "*?", ';', '.') are rejected with an error.
ParseResult ParseValue(std::string_view input, size_t* consumed, Value* out, std::string* error,
                       const ValueLimits& limits = {});

// Appends `args` encoded as a RESP array of bulk strings (how clients send commands).
void AppendCommand(std::string* out, std::span<const std::string_view> args);

}  // namespace distri::protocol

#endif  // DISTRI_PROTOCOL_RESP_PARSER_H_
