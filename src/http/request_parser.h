// RequestParser: HTTP/1.x requests from a byte stream, with size limits.
//
// A thin layer over Node's http-parser (Debian's libhttp-parser, the parser
// Node.js used before llhttp): it does the HTTP grammar, chunked bodies and
// keep-alive rules; this class collects one request at a time into a
// Request, enforces our limits, and stops after each message so pipelined
// requests are handled strictly in order. No I/O: the connection feeds bytes
// and consumes what Feed reports, so it is unit-tested and fuzzed directly.
//
// Usage: Feed(bytes) -> kRequest (take request(), then Reset() before the
// next Feed), kNeedMore (all bytes consumed), or kError (status() is the HTTP
// status to answer with, then close). Feed consumes every byte it is given
// unless it returns kRequest, which may leave bytes of the next request.
//
// Thread-safety: none; one per connection.

#ifndef DISTRI_HTTP_REQUEST_PARSER_H_
#define DISTRI_HTTP_REQUEST_PARSER_H_

#include <http_parser.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace distri::http {

struct Request {
  std::string method;  // "GET", "PUT", ...
  std::string target;  // as sent: "/api/rooms/x?prefix=a"
  std::string path;    // target before '?', still percent-encoded
  std::string query;   // after '?', still encoded
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  bool keep_alive = true;
  bool upgrade = false;  // "Connection: upgrade" (WebSocket handshake)

  // The first header named `name` (lower case), or nullptr.
  const std::string* Header(std::string_view name) const;
};

struct RequestLimits {
  size_t max_header_bytes = 16 * 1024;  // request line + every header
  size_t max_headers = 100;
  size_t max_body_bytes = 8 * 1024 * 1024;
};

class RequestParser {
 public:
  enum class State { kNeedMore, kRequest, kError };

  explicit RequestParser(RequestLimits limits = {});
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses as much of `data` as it can; *consumed says how much was used.
  State Feed(std::string_view data, size_t* consumed);
  // REQUIRES: the last Feed returned kRequest.
  Request& request() { return request_; }
  // Memory held by the body of the request in progress (its capacity).
  size_t body_bytes() const { return request_.body.capacity(); }
  // Prepares for the next request on the same connection.
  void Reset();

  // The headers of the request in progress are complete and it asked for
  // "Expect: 100-continue" (the caller may send "100 Continue" once).
  bool wants_continue() const { return headers_done_ && expect_continue_; }
  // After kError: the status to reply with (400, 413, 431, 505) and why.
  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }

 private:
  static int OnMessageBegin(http_parser* p);
  static int OnUrl(http_parser* p, const char* at, size_t len);
  static int OnHeaderField(http_parser* p, const char* at, size_t len);
  static int OnHeaderValue(http_parser* p, const char* at, size_t len);
  static int OnHeadersComplete(http_parser* p);
  static int OnBody(http_parser* p, const char* at, size_t len);
  static int OnMessageComplete(http_parser* p);
  int Fail(int status, std::string message);
  bool CountHeaderBytes(size_t len);

  RequestLimits limits_;
  http_parser parser_;
  http_parser_settings settings_;
  Request request_;
  size_t header_bytes_ = 0;
  bool in_value_ = false;  // the last header callback was a value
  bool headers_done_ = false;
  bool expect_continue_ = false;
  bool complete_ = false;
  int error_status_ = 0;
  std::string error_message_;
};

}  // namespace distri::http

#endif  // DISTRI_HTTP_REQUEST_PARSER_H_
