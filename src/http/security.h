// Who may talk to the HTTP endpoint: Host and Origin checks.
//
// Browsers let any web page send requests to 127.0.0.1, so two checks stand
// between a malicious page and the data:
//  * Origin: a browser names the page's origin on every WebSocket handshake
//    and every cross-origin write. Writes (PUT, POST, DELETE) and WebSocket
//    upgrades are refused unless the Origin is absent (curl, scripts) or
//    names this server itself (same scheme-less host:port as the Host header).
//  * Host: against DNS rebinding (evil.example resolving to 127.0.0.1, which
//    makes the page same-origin with us), a server bound to a loopback
//    address accepts only Host names that are loopback too: localhost,
//    127.x.y.z, [::1]. A server bound to another address accepts any Host.
//
// With --requirepass, every route but /healthz and the dashboard's static
// files needs the password (RequestPassword says where a request carries it).
//
// Thread-safety: pure functions.

#ifndef DISTRI_HTTP_SECURITY_H_
#define DISTRI_HTTP_SECURITY_H_

#include <optional>
#include <string>
#include <string_view>

#include "http/request_parser.h"

namespace distri::http {

bool IsLoopbackAddress(std::string_view host);
// `loopback_only`: the server is bound to a loopback address.
bool HostAllowed(const Request& req, bool loopback_only);
bool OriginAllowed(const Request& req);
// Methods that change state and so need OriginAllowed.
bool IsWriteMethod(std::string_view method);

// The WebSocket subprotocol the dashboard offers; the server echoes it.
inline constexpr std::string_view kWsProtocol = "distri";
// Prefix of the subprotocol value that carries the password on a WebSocket
// handshake (browsers cannot set Authorization there): "distri.auth." +
// base64url(password), unpadded. The server never echoes it, and nothing
// logs request headers.
inline constexpr std::string_view kWsAuthProtocolPrefix = "distri.auth.";

// The password a request carries: "Authorization: Bearer <password>", or a
// Sec-WebSocket-Protocol value as above. nullopt if it carries none (a
// malformed one counts as none).
std::optional<std::string> RequestPassword(const Request& req);
// Whether a WebSocket handshake offers the subprotocol `name`.
bool OffersWsProtocol(const Request& req, std::string_view name);

}  // namespace distri::http

#endif  // DISTRI_HTTP_SECURITY_H_
