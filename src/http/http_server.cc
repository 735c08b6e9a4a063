// HttpServer: listener, connection table, per-iteration flush, timeouts and
// the endpoint's own metrics; see http_server.h.

#include "http/http_server.h"

#include "base/logging.h"
#include "http/http_connection.h"
#include "http/security.h"

namespace distri::http {

namespace {

constexpr uint64_t kSweepIntervalMs = 1000;

Status UvError(const std::string& what, int rc) {
  return Status::IOError(what + ": " + uv_strerror(rc));
}

}  // namespace

HttpServer::HttpServer(uv_loop_t* loop, Backend* backend, HttpOptions options)
    : loop_(loop),
      backend_(backend),
      options_(std::move(options)),
      api_(backend, [this](MetricsWriter& w) { WriteOwnMetrics(w); }),
      loopback_only_(IsLoopbackAddress(options_.bind)),
      self_(std::make_shared<HttpServer*>(this)) {}

HttpServer::~HttpServer() {
  // Normally Close() ran and the loop freed every connection. If the loop
  // closed our handles itself (uv_walk at shutdown), free what is left.
  for (auto& [id, conn] : conns_) delete conn;
}

Status HttpServer::Listen() {
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  uv_check_init(loop_, &check_);
  check_.data = this;
  uv_timer_init(loop_, &sweep_);
  sweep_.data = this;
  handles_ready_ = true;
  sockaddr_storage addr;
  const std::string where = options_.bind + ":" + std::to_string(options_.port);
  int rc = uv_ip4_addr(options_.bind.c_str(), options_.port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0)
    rc = uv_ip6_addr(options_.bind.c_str(), options_.port, reinterpret_cast<sockaddr_in6*>(&addr));
  if (rc != 0) return Status::InvalidArgument("bad --bind address for HTTP: " + options_.bind);
  rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc != 0) return UvError("cannot bind HTTP port " + where, rc);
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 511, OnAccept);
  if (rc != 0) return UvError("cannot listen on HTTP port " + where, rc);
  uv_check_start(&check_, OnCheck);
  uv_timer_start(&sweep_, OnSweep, kSweepIntervalMs, kSweepIntervalMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(&sweep_));  // never the only reason to keep running
  return Status::Ok();
}

void HttpServer::Close() {
  if (closed_ || !handles_ready_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_), nullptr);
  for (auto& [id, conn] : conns_) {
    if (conn->is_websocket()) {
      conn->CloseWs(kWsCloseGoingAway, "server shutting down");
      conn->conn().Flush();
    }
    conn->Abort(/*reset=*/false);
  }
  dirty_.clear();
}

std::vector<HttpConnection*> HttpServer::WebSockets() const {
  std::vector<HttpConnection*> out;
  for (const auto& [id, conn] : conns_) {
    if (conn->is_websocket() && !conn->closing()) out.push_back(conn);
  }
  return out;
}

size_t HttpServer::websocket_count() const {
  size_t n = 0;
  for (const auto& [id, conn] : conns_) n += conn->is_websocket();
  return n;
}

void HttpServer::OnAccept(uv_stream_t* listener, int status) {
  auto* self = static_cast<HttpServer*>(listener->data);
  if (status < 0) {
    LOG(WARNING) << "HTTP accept failed: " << uv_strerror(status);
    return;
  }
  auto* conn = new HttpConnection(self, self->next_id_++);
  if (conn->conn().Accept(listener) != 0) {
    conn->conn().Close();  // deletes it in its close callback (not in conns_)
    return;
  }
  self->stats_.connections_total++;
  self->conns_.emplace(conn->id(), conn);
  conn->conn().set_gauge(self->backend_->response_gauge());  // unsent output is used memory
  const HttpOptions& o = self->options_;
  // Full: an idle keep-alive connection costs its client only a reconnect,
  // so it makes room first (O(connections), only while full).
  if (!self->closed_ && self->conns_.size() > o.max_connections && self->EvictIdle(conn)) return;
  if (!self->closed_ && self->conns_.size() > o.max_connections &&
      self->conns_.size() <= o.max_connections + o.health_connections) {
    conn->set_health_only();
  } else if (self->closed_ || self->conns_.size() > o.max_connections) {
    self->stats_.connections_rejected++;
    Response r = JsonError(503, "BUSY", "too many HTTP connections");
    AppendResponse(r, false, false, &conn->conn().output());
    conn->conn().CloseAfterFlush();
  }
}

bool HttpServer::EvictIdle(const HttpConnection* keep) {
  HttpConnection* oldest = nullptr;
  for (auto& [id, conn] : conns_) {
    int64_t since = conn->idle_since_ms();
    if (since < 0 || conn == keep) continue;
    // Oldest idle first; among equal times, the oldest connection (lowest id).
    if (oldest == nullptr ||
        std::pair(since, id) < std::pair(oldest->idle_since_ms(), oldest->id())) {
      oldest = conn;
    }
  }
  if (oldest == nullptr) return false;
  stats_.idle_evictions++;
  // Its close callback removes it from conns_; until then it is closing and
  // never counted as idle again.
  oldest->Abort(/*reset=*/false);
  return true;
}

void HttpServer::MarkDirty(HttpConnection* conn) {
  if (!conn->dirty) {
    conn->dirty = true;
    dirty_.push_back(conn);
  }
}

HttpConnection* HttpServer::Find(uint64_t id) {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second;
}

void HttpServer::OnConnectionClosed(HttpConnection* conn) {
  conns_.erase(conn->id());
  if (conn->dirty) std::erase(dirty_, conn);
}

void HttpServer::OnCheck(uv_check_t* handle) {
  static_cast<HttpServer*>(handle->data)->FlushDirty();
}

void HttpServer::FlushDirty() {
  while (!dirty_.empty()) {
    std::vector<HttpConnection*> batch;
    batch.swap(dirty_);
    for (HttpConnection* c : batch) {
      c->dirty = false;
      c->conn().Flush();  // may run OnDrained, which may mark it dirty again
    }
  }
}

void HttpServer::OnSweep(uv_timer_t* handle) {
  auto* self = static_cast<HttpServer*>(handle->data);
  int64_t now = static_cast<int64_t>(uv_hrtime() / 1000000);
  std::vector<HttpConnection*> all;
  all.reserve(self->conns_.size());
  for (auto& [id, conn] : self->conns_) all.push_back(conn);
  for (HttpConnection* c : all) c->Sweep(now);  // may close, never frees synchronously
}

void HttpServer::WriteOwnMetrics(MetricsWriter& w) {
  w.Gauge("distri_http_connections", "Open HTTP connections (WebSockets included)",
          static_cast<double>(conns_.size()));
  w.Gauge("distri_http_websockets", "Open WebSocket sessions",
          static_cast<double>(websocket_count()));
  w.Counter("distri_http_connections_total", "HTTP connections accepted",
            static_cast<double>(stats_.connections_total));
  w.Counter("distri_http_connections_rejected_total", "HTTP connections refused (too many)",
            static_cast<double>(stats_.connections_rejected));
  w.Counter("distri_http_timeouts_total", "HTTP connections closed for a slow request or idleness",
            static_cast<double>(stats_.timeouts));
  w.Counter("distri_http_idle_evictions_total",
            "Idle keep-alive HTTP connections closed to make room for new ones",
            static_cast<double>(stats_.idle_evictions));
  w.Counter("distri_http_forbidden_total", "HTTP requests refused by the Host or Origin check",
            static_cast<double>(stats_.forbidden));
  w.Counter("distri_http_unauthorized_total",
            "HTTP requests refused for a missing or wrong password",
            static_cast<double>(stats_.unauthorized));
  w.Gauge("distri_http_body_bytes_in_flight", "Bytes of request bodies being received",
          static_cast<double>(body_bytes_in_flight_));
  w.Counter("distri_http_body_budget_refusals_total",
            "HTTP requests refused because too many request bodies were in flight",
            static_cast<double>(stats_.body_budget_refusals));
  w.Counter("distri_http_websocket_sessions_total", "WebSocket sessions opened",
            static_cast<double>(stats_.ws_sessions_total));
  w.Counter("distri_http_websocket_messages_received_total", "WebSocket text messages received",
            static_cast<double>(stats_.ws_messages_in));
  w.Counter("distri_http_websocket_messages_sent_total", "WebSocket text messages sent",
            static_cast<double>(stats_.ws_messages_out));
  w.Counter("distri_http_websocket_slow_consumer_disconnects_total",
            "WebSockets cut off for not reading their mirror",
            static_cast<double>(stats_.ws_slow_consumer_disconnects));
  w.Counter("distri_http_output_limit_disconnects_total",
            "HTTP connections cut off for unsent responses past the output limit",
            static_cast<double>(stats_.output_limit_disconnects));
  w.Family("distri_http_requests_total", "counter",
           "HTTP requests answered, by route, method and status");
  for (const auto& [k, n] : stats_.requests) {
    const auto& [route, method, status] = k;
    std::string code = std::to_string(status);
    w.Sample("distri_http_requests_total", static_cast<double>(n),
             {{"route", route}, {"method", method}, {"code", code}});
  }
  w.Family("distri_http_request_duration_seconds", "histogram",
           "Time from a complete HTTP request to its response (writes include the fsync)");
  for (const auto& [k, h] : stats_.latency) {
    size_t nl = k.find('\n');
    w.HistogramSamples("distri_http_request_duration_seconds", h,
                       {{"route", std::string_view(k).substr(0, nl)},
                        {"method", std::string_view(k).substr(nl + 1)}});
  }
  w.Family("distri_http_websocket_write_seconds", "histogram",
           "Time from a WebSocket set/del to its result (proposed, fsynced, applied)");
  w.HistogramSamples("distri_http_websocket_write_seconds", stats_.write_latency);
}

}  // namespace distri::http
