// Response: an HTTP response to serialise, and the JSON error shape.
//
// Every response carries the same security headers (nosniff, no framing, no
// referrer); HTML gets a Content-Security-Policy that allows only this
// origin's scripts, styles and connections, so even a bug that put a key
// into markup could not run script. Errors are JSON:
//   {"error": {"code": "NOTFOUND", "message": "no such room"}}
// with the code words of docs/protocol.md plus HTTP-only ones.
//
// Thread-safety: pure functions.

#ifndef DISTRI_HTTP_RESPONSE_H_
#define DISTRI_HTTP_RESPONSE_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace distri::http {

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string body;
};

std::string_view StatusText(int status);

// A JSON error body with `code` and `message`.
Response JsonError(int status, std::string_view code, std::string_view message);
// A 200 (or `status`) response with a JSON body.
Response JsonOk(std::string body, int status = 200);

// Serialises the status line, headers and (unless `head_only`) the body.
void AppendResponse(const Response& r, bool keep_alive, bool head_only, std::string* out);

inline constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'";

}  // namespace distri::http

#endif  // DISTRI_HTTP_RESPONSE_H_
