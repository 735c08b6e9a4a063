// HttpServer: the HTTP/WebSocket endpoint (dashboard, JSON API, /metrics)
// on the server's own libuv loop. See docs/http.md.
//
// Requests are parsed with http-parser (request_parser.h) and answered one
// at a time per connection, in order (a write waits for its entry to apply
// before the next pipelined request is read). GET /api/rooms/{code}/ws
// upgrades the connection to a WebSocket carrying a live mirror of the room
// (ws_session.h). Output is buffered per connection and written once per
// loop iteration (a uv_check handle), like the RESP clients' replies.
//
// Limits: request headers and body (431/413); request bodies being received
// across all connections together (503 beyond max_body_bytes_in_flight, so
// many unfinished uploads cannot exhaust memory); connections: beyond
// max_connections, health_connections more are accepted that may only ask
// /healthz or /readyz (so health checks get through when idle sockets fill
// the table), and any more get 503; a whole request must arrive within
// request_timeout_ms (408: no slowloris); idle keep-alive connections close
// after idle_timeout_ms; and a WebSocket whose unsent output passes
// ws_output_limit is disconnected (like a slow RESP mirror), and so is a
// connection whose unsent responses pass the backend's
// response_output_limit(): requests are read and answered while responses
// are unsent, so a client may pipeline before it reads. Unsent output counts
// in the backend's gauges (WebSocket frames as pushed output, which the owner
// may cut off under its budget: WebSockets()).
//
// Authentication: when the backend says a password is required, every
// request but /healthz and the static dashboard files must carry it
// (security.h, RequestPassword); 401 otherwise, and failures count against
// the backend's per-address limit (429 and close once over it).
//
// Lifetime: construct, Listen(), and Close() before the loop stops; the
// connections are freed by their close callbacks, so the loop must run once
// more after Close() (Server's destructor does). Thread-safety: loop thread.

#ifndef DISTRI_HTTP_HTTP_SERVER_H_
#define DISTRI_HTTP_HTTP_SERVER_H_

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "distri/status.h"
#include "http/api.h"
#include "http/backend.h"
#include "http/metrics.h"
#include "http/request_parser.h"

namespace distri::http {

class HttpConnection;

struct HttpOptions {
  std::string bind = "127.0.0.1";
  int port = 7380;
  RequestLimits limits;
  size_t max_ws_message_bytes = 8 * 1024 * 1024;
  size_t ws_output_limit = 32 * 1024 * 1024;
  size_t max_connections = 1024;
  size_t health_connections = 16;  // beyond max_connections, for /healthz and /readyz only
  size_t max_body_bytes_in_flight = 128 * 1024 * 1024;
  int64_t request_timeout_ms = 30000;
  int64_t idle_timeout_ms = 60000;
};

struct HttpStats {
  uint64_t connections_total = 0;
  uint64_t connections_rejected = 0;
  uint64_t timeouts = 0;
  uint64_t idle_evictions = 0;  // idle keep-alive connections closed to make room
  uint64_t forbidden = 0;  // Host or Origin refused
  uint64_t unauthorized = 0;  // 401 and 429: no or a wrong password
  uint64_t body_budget_refusals = 0;  // 503: too many request bodies in flight
  uint64_t ws_sessions_total = 0;
  uint64_t ws_messages_in = 0;
  uint64_t ws_messages_out = 0;
  uint64_t ws_slow_consumer_disconnects = 0;
  uint64_t output_limit_disconnects = 0;  // unsent responses past the output limit
  // (route, method, status) -> count
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests;
  // route -> time from a complete request to its response
  std::map<std::string, Histogram, std::less<>> latency;
  Histogram write_latency;  // PUT/POST/DELETE and WebSocket writes: propose -> applied
};

class HttpServer {
 public:
  HttpServer(uv_loop_t* loop, Backend* backend, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds options.bind:options.port and starts accepting.
  Status Listen();
  // Stops accepting and closes every connection (WebSockets get a 1001 close).
  void Close();

  size_t connection_count() const { return conns_.size(); }
  size_t websocket_count() const;
  const HttpOptions& options() const { return options_; }
  bool loopback_only() const { return loopback_only_; }
  HttpStats& stats() { return stats_; }
  Backend* backend() { return backend_; }
  Api& api() { return api_; }
  uv_loop_t* loop() { return loop_; }
  // Guards callbacks that may outlive the server (see HttpConnection).
  std::weak_ptr<HttpServer*> weak() { return self_; }

  // Writes what this loop iteration produced (responses, mirror updates). Run
  // by the server's check handle, and by the owner before it enforces its
  // push output budget, so that only what sockets would not take counts.
  void FlushDirty();
  // The open WebSocket connections (for the owner's push output budget).
  std::vector<HttpConnection*> WebSockets() const;

  // Called by connections.
  void MarkDirty(HttpConnection* conn);
  void OnConnectionClosed(HttpConnection* conn);
  HttpConnection* Find(uint64_t id);
  // Request bodies being received, summed over connections.
  void ChargeBodyBytes(size_t old_bytes, size_t new_bytes) {
    body_bytes_in_flight_ += new_bytes;
    body_bytes_in_flight_ -= old_bytes;
  }
  size_t body_bytes_in_flight() const { return body_bytes_in_flight_; }

 private:
  static void OnAccept(uv_stream_t* listener, int status);
  static void OnCheck(uv_check_t* handle);
  static void OnSweep(uv_timer_t* handle);
  // Closes the connection idle the longest, other than `keep`, to make room;
  // false if none is idle.
  bool EvictIdle(const HttpConnection* keep);
  void WriteOwnMetrics(MetricsWriter& w);

  uv_loop_t* loop_;
  Backend* backend_;
  HttpOptions options_;
  Api api_;
  bool loopback_only_;
  uv_tcp_t listener_;
  uv_check_t check_;
  uv_timer_t sweep_;
  bool handles_ready_ = false;
  bool closed_ = false;
  std::unordered_map<uint64_t, HttpConnection*> conns_;
  std::vector<HttpConnection*> dirty_;
  uint64_t next_id_ = 1;
  size_t body_bytes_in_flight_ = 0;
  HttpStats stats_;
  std::shared_ptr<HttpServer*> self_;
};

}  // namespace distri::http

#endif  // DISTRI_HTTP_HTTP_SERVER_H_
