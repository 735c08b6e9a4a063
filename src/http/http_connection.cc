// HTTP connections: request loop, responses, WebSocket upgrade; see
// http_connection.h.

#include "http/http_connection.h"

#include <uv.h>

#include "base/logging.h"
#include "base/strings.h"
#include "http/api.h"
#include "http/http_server.h"
#include "http/security.h"
#include "http/text.h"
#include "http/ws_session.h"

namespace distri::http {

namespace {

constexpr size_t kIdleInputKeep = 1 << 20;

int64_t NowMs() { return static_cast<int64_t>(uv_hrtime() / 1000000); }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return base::EqualsIgnoreCase(a, b);
}

}  // namespace

HttpConnection::HttpConnection(HttpServer* server, uint64_t id)
    : server_(server), id_(id), conn_(server->loop(), this), parser_(server->options().limits) {
  idle_since_ms_ = NowMs();
}

HttpConnection::~HttpConnection() = default;

void HttpConnection::SendWs(WsOpcode opcode, std::string_view payload) {
  if (conn_.closing()) return;
  AppendWsFrame(&conn_.output(), opcode, payload);
  server_->MarkDirty(this);
  // Every frame, not only mirror updates: a client that sends pings or stats
  // requests and never reads must not grow its output without bound either.
  conn_.SyncGauge();
  if (conn_.pending_output() > server_->options().ws_output_limit) {
    CutOff("over the WebSocket output limit");
  }
}

void HttpConnection::CutOff(std::string_view why) {
  if (conn_.closing()) return;
  if (ws_) {
    server_->stats().ws_slow_consumer_disconnects++;
  } else {
    server_->stats().output_limit_disconnects++;
  }
  LOG(WARNING) << "disconnecting slow HTTP " << (ws_ ? "WebSocket" : "client") << " id=" << id_
               << " addr=" << conn_.PeerAddress() << ": " << conn_.pending_output()
               << " bytes unsent, " << why;
  // A reset frees the queued output at once (and takes it out of its gauge).
  // Not ws_->StopMirror(): the mirror hub may be iterating its mirrors; the
  // closed connection's sink reports closed() and the mirror stops when the
  // session is freed.
  conn_.Reset();
}

void HttpConnection::CloseWs(uint16_t code, std::string_view reason) {
  if (conn_.closing()) return;
  if (ws_) ws_->StopMirror();
  AppendWsClose(&conn_.output(), code, reason);
  conn_.CloseAfterFlush();
}

void HttpConnection::Abort(bool reset) {
  if (reset) {
    conn_.Reset();
  } else {
    conn_.Close();
  }
}

void HttpConnection::Sweep(int64_t now_ms) {
  if (conn_.closing() || ws_) return;
  const HttpOptions& o = server_->options();
  if (request_started_ms_ != 0 && !busy_ && now_ms - request_started_ms_ > o.request_timeout_ms) {
    server_->stats().timeouts++;
    FailRequest(408, "TIMEOUT", "the request did not arrive in time");
    return;
  }
  if (request_started_ms_ == 0 && !busy_ && now_ms - idle_since_ms_ > o.idle_timeout_ms) {
    server_->stats().timeouts++;
    conn_.Close();
  }
}

void HttpConnection::OnData() {
  if (ws_) {
    ProcessWsInput();
  } else {
    if (request_started_ms_ == 0) request_started_ms_ = NowMs();
    ProcessInput();
  }
}

void HttpConnection::OnPeerClosed(bool eof) {
  peer_closed_ = true;
  if (ws_ || !eof) {
    // A WebSocket without its peer is over; a reset drops what is owed.
    if (ws_) ws_->StopMirror();
    conn_.Close();
    return;
  }
  // A half-close: answer the complete requests already received, then close
  // (ProcessInput closes after flushing once it needs bytes that won't come).
  if (!busy_) ProcessInput();
}

void HttpConnection::OnClosed() {
  ChargeBody(0);
  server_->OnConnectionClosed(this);
  delete this;
}

void HttpConnection::OnDrained() {
  if (ws_) {
    ws_->OnDrained();
    return;
  }
  conn_.input().ShrinkIfIdle(kIdleInputKeep);
}

void HttpConnection::FailRequest(int status, std::string_view code, std::string_view message) {
  Response r = JsonError(status, code, message);
  server_->stats().requests[{"bad", "-", status}]++;
  AppendResponse(r, /*keep_alive=*/false, /*head_only=*/false, &conn_.output());
  conn_.CloseAfterFlush();
}

void HttpConnection::ChargeBody(size_t bytes) {
  server_->ChargeBodyBytes(body_charged_, bytes);
  body_charged_ = bytes;
}

bool HttpConnection::Authorize(const Request& req, const Route& route, uint64_t seq,
                               bool head_only, bool keep_alive) {
  if (!server_->backend()->auth_required() || route.kind == Route::Kind::kHealthz ||
      route.kind == Route::Kind::kAsset) {
    return true;
  }
  std::optional<std::string> password = RequestPassword(req);
  AuthResult result = AuthResult::kWrong;
  if (password) result = server_->backend()->Authenticate(conn_.PeerAddress(), *password);
  if (result == AuthResult::kOk) return true;
  server_->stats().unauthorized++;
  const int status = result == AuthResult::kLimited ? 429 : 401;
  server_->stats().requests[{std::string(route.name), req.method, status}]++;
  if (result == AuthResult::kLimited) {
    Response r = JsonError(
        429, "TOOMANY", "too many failed password attempts from this address; retry in a second");
    r.headers.emplace_back("Retry-After", "1");
    Finish(seq, std::move(r), head_only, /*keep_alive=*/false);
    return false;
  }
  Response r =
      password ? JsonError(401, "WRONGPASS", "wrong password")
               : JsonError(401, "NOAUTH",
                           "authentication required: send Authorization: Bearer <password>");
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"distri\"");
  Finish(seq, std::move(r), head_only, keep_alive && !req.upgrade);
  return false;
}

void HttpConnection::ProcessInput() {
  if (in_process_) return;
  in_process_ = true;
  // Reading goes on while responses are unsent, as on the RESP port: a client
  // may write a whole pipeline before it reads (pausing here would deadlock
  // it, blocked in send() while we wait for it to read). What bounds the
  // unsent responses is the output limit, checked in Finish.
  while (!busy_ && !ws_ && !conn_.closing()) {
    size_t consumed = 0;
    RequestParser::State st = parser_.Feed(conn_.input().view(), &consumed);
    conn_.input().Consume(consumed);
    ChargeBody(parser_.body_bytes());
    if (body_charged_ > 0 &&
        server_->body_bytes_in_flight() > server_->options().max_body_bytes_in_flight) {
      server_->stats().body_budget_refusals++;
      FailRequest(503, "BUSY", "too many request bodies in flight; retry later");
      break;
    }
    if (st == RequestParser::State::kNeedMore) {
      if (parser_.wants_continue() && !sent_continue_) {
        sent_continue_ = true;
        conn_.output().append("HTTP/1.1 100 Continue\r\n\r\n");
        server_->MarkDirty(this);
      }
      if (peer_closed_) conn_.CloseAfterFlush();  // nothing more will arrive
      break;
    }
    if (st == RequestParser::State::kError) {
      FailRequest(parser_.error_status(), parser_.error_status() == 413 ? "TOOLARGE" : "ERR",
                  parser_.error_message());
      break;
    }
    Request req = std::move(parser_.request());
    parser_.Reset();
    sent_continue_ = false;
    ChargeBody(parser_.body_bytes());  // the body now belongs to `req`, freed below
    HandleRequest(req);
  }
  in_process_ = false;
}

void HttpConnection::HandleRequest(Request& req) {
  busy_ = true;
  const uint64_t seq = seq_;
  const bool head_only = req.method == "HEAD";
  const bool keep_alive = req.keep_alive && !peer_closed_;
  Route route = MatchRoute(req.path);
  if (!HostAllowed(req, server_->loopback_only())) {
    server_->stats().forbidden++;
    Finish(seq,
           JsonError(403, "FORBIDDEN", "Host header not allowed for a server bound to loopback"),
           head_only, keep_alive);
    return;
  }
  if ((IsWriteMethod(req.method) || req.upgrade) && !OriginAllowed(req)) {
    server_->stats().forbidden++;
    Finish(seq, JsonError(403, "FORBIDDEN", "cross-origin request refused"), head_only, keep_alive);
    return;
  }
  if (health_only_ && route.kind != Route::Kind::kHealthz && route.kind != Route::Kind::kReadyz) {
    Finish(seq, JsonError(503, "BUSY", "too many HTTP connections"), head_only, false);
    return;
  }
  if (!Authorize(req, route, seq, head_only, keep_alive && !health_only_)) return;
  if (route.kind == Route::Kind::kRoomWs && req.upgrade) {
    Upgrade(req, route);
    return;
  }
  std::string route_name(route.name);
  std::string method = req.method;
  uint64_t started = uv_hrtime();
  std::weak_ptr<HttpServer*> weak = server_->weak();
  uint64_t id = id_;
  // Who sees room codes (commands/access.h): with a password every request
  // here has given it; without one, only a server bound to loopback shows them.
  const bool show_codes = server_->backend()->auth_required() || server_->backend()->open_admin();
  const bool close_after = health_only_;
  server_->api().Handle(
      req, route, show_codes,
      [weak, id, seq, head_only, keep_alive, close_after, route_name, method,
       started](Response r) {
        auto server = weak.lock();
        if (!server) return;
        HttpStats& stats = (*server)->stats();
        stats.requests[{route_name, method, r.status}]++;
        stats.latency[route_name + "\n" + method].Observe(
            static_cast<double>(uv_hrtime() - started) / 1e9);
        HttpConnection* conn = (*server)->Find(id);
        if (conn != nullptr) conn->Finish(seq, std::move(r), head_only, keep_alive && !close_after);
      });
}

void HttpConnection::Finish(uint64_t seq, Response response, bool head_only, bool keep_alive) {
  if (seq != seq_ || !busy_ || conn_.closing()) return;
  seq_++;
  busy_ = false;
  request_started_ms_ = conn_.input().empty() ? 0 : NowMs();
  idle_since_ms_ = NowMs();
  AppendResponse(response, keep_alive, head_only, &conn_.output());
  conn_.SyncGauge();
  const uint64_t limit = server_->backend()->response_output_limit();
  if (limit != 0 && conn_.pending_output() > limit) {
    CutOff("over the output limit (--output-limit)");
    return;
  }
  if (!keep_alive) {
    conn_.CloseAfterFlush();
    return;
  }
  server_->MarkDirty(this);
  ProcessInput();  // the next pipelined request, if any (no-op when already on the stack)
}

void HttpConnection::Upgrade(const Request& req, const Route& route) {
  const uint64_t seq = seq_;
  auto refuse = [&](int status, std::string_view code, std::string_view message) {
    server_->stats().requests[{std::string(route.name), "GET", status}]++;
    Response r = JsonError(status, code, message);
    if (status == 426) r.headers.emplace_back("Sec-WebSocket-Version", "13");
    Finish(seq, std::move(r), false, false);
  };
  const std::string* upgrade = req.Header("upgrade");
  const std::string* version = req.Header("sec-websocket-version");
  const std::string* key = req.Header("sec-websocket-key");
  if (req.method != "GET" || upgrade == nullptr || !EqualsIgnoreCase(*upgrade, "websocket")) {
    return refuse(400, "ERR", "expected a WebSocket upgrade (GET with Upgrade: websocket)");
  }
  if (version == nullptr || *version != "13")
    return refuse(426, "UPGRADE", "WebSocket version 13 required");
  auto raw_key = key ? Base64Decode(*key) : std::nullopt;
  if (!raw_key || raw_key->size() != 16) return refuse(400, "ERR", "bad Sec-WebSocket-Key");
  auto query = ParseQuery(req.query);
  if (!query) return refuse(400, "ERR", "malformed percent-escape in the query");
  std::string prefix;
  std::optional<uint64_t> from;
  bool mirror = true;
  for (const auto& [name, value] : *query) {
    if (name == "prefix") {
      prefix = value;
    } else if (name == "from") {
      uint64_t v;
      if (!base::ParseUint64(value, &v))
        return refuse(400, "ERR", "from must be a revision number");
      from = v;
    } else if (name == "mirror") {
      mirror = value != "0";
    }
  }
  if (!server_->backend()->RoomExists(route.code)) return refuse(404, "NOTFOUND", "no such room");

  server_->stats().requests[{std::string(route.name), "GET", 101}]++;
  server_->stats().ws_sessions_total++;
  seq_++;
  busy_ = false;
  request_started_ms_ = 0;
  std::string& out = conn_.output();
  out.append("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
  out.append("Sec-WebSocket-Accept: ").append(WsAcceptKey(*key)).append("\r\n");
  // Browsers fail a handshake that offered subprotocols unless one is
  // chosen; the dashboard offers "distri" (and maybe the password, never echoed).
  if (OffersWsProtocol(req, kWsProtocol)) {
    out.append("Sec-WebSocket-Protocol: ").append(kWsProtocol).append("\r\n");
  }
  out.append("\r\n");
  server_->MarkDirty(this);
  // From now on its output is pushed output: counted against the push budget.
  conn_.set_gauge(server_->backend()->push_gauge());
  ws_reader_ = std::make_unique<WsReader>(server_->options().max_ws_message_bytes);
  ws_ = std::make_unique<WsSession>(server_, this, route.code);
  if (mirror) ws_->Mirror(prefix, from);
  // Frames the client sent right behind the handshake.
  if (!conn_.input().empty()) ProcessWsInput();
}

void HttpConnection::ProcessWsInput() {
  while (!conn_.closing()) {
    size_t consumed = 0;
    WsReader::State st = ws_reader_->Read(conn_.input().view(), &consumed);
    conn_.input().Consume(consumed);
    if (st == WsReader::State::kNeedMore) break;
    if (st == WsReader::State::kError) {
      LOG(DEBUG) << "WebSocket protocol error: " << ws_reader_->error_message();
      CloseWs(ws_reader_->error_code(), ws_reader_->error_message());
      break;
    }
    WsMessage& m = ws_reader_->message();
    switch (m.opcode) {
      case WsOpcode::kText:
        ws_->OnText(m.payload);
        break;
      case WsOpcode::kBinary:
        CloseWs(1003, "binary messages are not supported; send JSON text");
        break;
      case WsOpcode::kPing:
        SendWs(WsOpcode::kPong, m.payload);
        break;
      case WsOpcode::kPong:
        break;
      case WsOpcode::kClose: {
        uint16_t code = kWsCloseNormal;
        if (m.payload.size() >= 2) {
          code = static_cast<uint16_t>(static_cast<uint8_t>(m.payload[0]) << 8 |
                                       static_cast<uint8_t>(m.payload[1]));
        }
        // Echo the code (RFC 6455 5.5.1), unless it may not be sent on the wire.
        if (code < 1000 || code == 1004 || code == 1005 || code == 1006 ||
            (code > 1011 && code < 3000) || code > 4999) {
          code = kWsCloseProtocol;
        }
        CloseWs(code, "");
        break;
      }
      case WsOpcode::kContinuation:
        break;  // never returned by WsReader
    }
  }
  conn_.input().ShrinkIfIdle(kIdleInputKeep);
}

}  // namespace distri::http
