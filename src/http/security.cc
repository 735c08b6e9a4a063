// Host and Origin checks; see security.h.

#include "http/security.h"

#include <cctype>
#include <string>

#include "base/strings.h"
#include "http/text.h"

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

namespace {

// Calls fn(value) for each comma-separated value of Sec-WebSocket-Protocol
// (every such header), trimmed; stops when fn returns true.
template <typename Fn>
bool AnyWsProtocol(const Request& req, Fn fn) {
  for (const auto& [name, value] : req.headers) {
    if (name != "sec-websocket-protocol") continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (fn(item)) return true;
    }
  }
  return false;
}

}  // namespace

std::optional<std::string> RequestPassword(const Request& req) {
  if (const std::string* auth = req.Header("authorization")) {
    std::string_view v = *auth;
    if (v.size() > 7 && base::EqualsIgnoreCase(v.substr(0, 7), "bearer ")) {
      return std::string(v.substr(7));
    }
    return std::nullopt;
  }
  std::optional<std::string> found;
  AnyWsProtocol(req, [&](std::string_view item) {
    if (!item.starts_with(kWsAuthProtocolPrefix)) return false;
    std::string b64(item.substr(kWsAuthProtocolPrefix.size()));
    for (char& c : b64) {
      if (c == '-') c = '+';
      if (c == '_') c = '/';
    }
    while (b64.size() % 4 != 0) b64.push_back('=');
    found = Base64Decode(b64);
    return true;
  });
  return found;
}

bool OffersWsProtocol(const Request& req, std::string_view name) {
  return AnyWsProtocol(req, [&](std::string_view item) { return item == name; });
}

}  // namespace distri::http
