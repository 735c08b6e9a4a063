// Response serialisation; see response.h.

#include "http/response.h"

#include "http/text.h"

namespace distri::http {

std::string_view StatusText(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    case 507:
      return "Insufficient Storage";
    default:
      return "Unknown";
  }
}

Response JsonError(int status, std::string_view code, std::string_view message) {
  Response r;
  r.status = status;
  JsonWriter w(&r.body);
  w.BeginObject().Key("error").BeginObject();
  w.Key("code").String(code).Key("message").String(message);
  w.EndObject().EndObject();
  return r;
}

Response JsonOk(std::string body, int status) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

void AppendResponse(const Response& r, bool keep_alive, bool head_only, std::string* out) {
  out->append("HTTP/1.1 ")
      .append(std::to_string(r.status))
      .append(" ")
      .append(StatusText(r.status));
  out->append("\r\nServer: distri\r\nContent-Type: ").append(r.content_type);
  out->append("\r\nContent-Length: ").append(std::to_string(r.body.size()));
  out->append(
      "\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: "
      "no-referrer");
  if (r.content_type.starts_with("text/html")) {
    out->append("\r\nContent-Security-Policy: ").append(kContentSecurityPolicy);
  }
  bool has_cache_control = false;
  for (const auto& [name, value] : r.headers) {
    out->append("\r\n").append(name).append(": ").append(value);
    has_cache_control |= name == "Cache-Control";
  }
  if (!has_cache_control) out->append("\r\nCache-Control: no-store");
  out->append(keep_alive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n");
  if (!head_only) out->append(r.body);
}

}  // namespace distri::http
