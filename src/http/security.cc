// Host and Origin checks; see security.h.

#include "http/security.h"

#include <cctype>
#include <string>

namespace distri::http {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "host:port" -> "host"; "[::1]:80" -> "::1".
std::string_view HostPart(std::string_view authority) {
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    return close == std::string_view::npos ? authority : authority.substr(1, close - 1);
  }
  size_t colon = authority.find(':');
  return authority.substr(0, colon);
}

}  // namespace

bool IsLoopbackAddress(std::string_view host) {
  std::string h = Lower(host);
  if (h == "localhost" || h.ends_with(".localhost") || h == "::1") return true;
  if (!h.starts_with("127.")) return false;
  // 127.x.y.z with digits only.
  int dots = 0;
  for (char c : h) {
    if (c == '.') {
      dots++;
    } else if (!std::isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return dots == 3;
}

bool HostAllowed(const Request& req, bool loopback_only) {
  const std::string* host = req.Header("host");
  if (host == nullptr) return !loopback_only;  // HTTP/1.0 without Host
  if (!loopback_only) return true;
  return IsLoopbackAddress(HostPart(*host));
}

bool OriginAllowed(const Request& req) {
  const std::string* origin = req.Header("origin");
  if (origin == nullptr) return true;  // not a browser (or a same-origin GET)
  const std::string* host = req.Header("host");
  if (host == nullptr) return false;
  std::string o = Lower(*origin);
  std::string_view authority;
  if (o.starts_with("http://")) {
    authority = std::string_view(o).substr(7);
  } else if (o.starts_with("https://")) {
    authority = std::string_view(o).substr(8);
  } else {
    return false;  // "null", file://, extensions
  }
  if (authority.ends_with("/")) authority.remove_suffix(1);
  return authority == Lower(*host);
}

bool IsWriteMethod(std::string_view method) {
  return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

}  // namespace distri::http
