// HttpConnection: one accepted HTTP connection, which may become a WebSocket.
//
// Invariants:
//  1. At most one request is being answered at a time (`busy_`); later
//     pipelined requests stay unparsed in the input buffer, so responses go
//     out in request order.
//  2. Once upgraded (`ws_` set) the connection never parses HTTP again.
//  3. Requests are read and answered while responses are unsent (a client
//     may pipeline before it reads); the unsent responses are bounded by the
//     backend's response_output_limit() and WebSocket frames by
//     ws_output_limit: past them the connection is cut off (CutOff). Unsent
//     output counts in the backend's gauges (responses as ordinary output,
//     WebSocket frames as pushed output).
//  4. Callbacks that may run after the connection is gone (a write's
//     completion) hold the server's weak handle and the connection's id, and
//     look the connection up again; they never hold its pointer.
//
// Thread-safety: loop thread only. Owned by HttpServer; deletes itself when
// its socket has closed.

#ifndef DISTRI_HTTP_HTTP_CONNECTION_H_
#define DISTRI_HTTP_HTTP_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "http/request_parser.h"
#include "http/response.h"
#include "http/websocket.h"
#include "net/connection.h"

namespace distri::http {

class HttpServer;
class WsSession;
struct Route;

class HttpConnection final : public net::Connection::Handler {
 public:
  HttpConnection(HttpServer* server, uint64_t id);
  ~HttpConnection() override;
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  uint64_t id() const { return id_; }
  net::Connection& conn() { return conn_; }
  bool is_websocket() const { return ws_ != nullptr; }
  bool closing() const { return conn_.closing(); }
  size_t unsent_bytes() const { return conn_.pending_output(); }
  // An overflow connection (beyond max_connections): health checks only.
  void set_health_only() { health_only_ = true; }
  // When it went idle (a keep-alive connection between requests), or -1 if
  // it is not idle (mid-request, a WebSocket, closing).
  int64_t idle_since_ms() const {
    return busy_ || ws_ || request_started_ms_ != 0 || conn_.closing() ? -1 : idle_since_ms_;
  }

  // Sends one WebSocket frame (written at the end of this loop iteration).
  void SendWs(WsOpcode opcode, std::string_view payload);
  // Sends a close frame, then closes once it is written.
  void CloseWs(uint16_t code, std::string_view reason);
  // Closes at once (with a TCP reset if `reset`), dropping unsent output.
  void Abort(bool reset);
  // Cuts the connection off for its unsent output (a client that does not
  // read): logged with `why`, counted, reset at once. Safe while the mirror
  // hub delivers.
  void CutOff(std::string_view why);
  // Enforces timeouts; called about once a second.
  void Sweep(int64_t now_ms);

  bool dirty = false;

  // net::Connection::Handler
  void OnData() override;
  void OnPeerClosed(bool eof) override;
  void OnClosed() override;
  void OnDrained() override;

 private:
  void ProcessInput();
  void ProcessWsInput();
  void HandleRequest(Request& req);
  void Upgrade(const Request& req, const Route& route);
  // Writes the response to request `seq` and goes on with the next request.
  void Finish(uint64_t seq, Response response, bool head_only, bool keep_alive);
  void FailRequest(int status, std::string_view code, std::string_view message);
  // Checks the request's password if one is required; false once the
  // refusal (401/429) has been answered.
  bool Authorize(const Request& req, const Route& route, uint64_t seq, bool head_only,
                 bool keep_alive);
  // Keeps the server's sum of in-flight body bytes current.
  void ChargeBody(size_t bytes);

  HttpServer* server_;
  uint64_t id_;
  net::Connection conn_;
  RequestParser parser_;
  std::unique_ptr<WsReader> ws_reader_;
  std::unique_ptr<WsSession> ws_;
  uint64_t seq_ = 0;            // requests answered so far
  bool busy_ = false;           // a request is being answered (invariant 1)
  bool in_process_ = false;     // ProcessInput is on the stack
  bool sent_continue_ = false;  // "100 Continue" sent for the current request
  bool peer_closed_ = false;
  bool health_only_ = false;
  size_t body_charged_ = 0;  // this connection's share of the server's body bytes
  int64_t request_started_ms_ = 0;  // first byte of the request in progress; 0 = idle
  int64_t idle_since_ms_ = 0;
};

}  // namespace distri::http

#endif  // DISTRI_HTTP_HTTP_CONNECTION_H_
