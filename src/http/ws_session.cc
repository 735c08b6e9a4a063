// WebSocket room sessions; see ws_session.h.

#include "http/ws_session.h"

#include "base/logging.h"
#include "http/api.h"
#include "http/http_connection.h"
#include "http/http_server.h"
#include "http/json_input.h"
#include "http/text.h"

namespace distri::http {

namespace {

std::string_view KindName(MirrorUpdate::Kind kind) {
  switch (kind) {
    case MirrorUpdate::Kind::kReset:
      return "reset";
    case MirrorUpdate::Kind::kSnapshot:
      return "snapshot";
    case MirrorUpdate::Kind::kReady:
      return "ready";
    case MirrorUpdate::Kind::kSet:
      return "set";
    case MirrorUpdate::Kind::kDel:
      return "del";
    case MirrorUpdate::Kind::kFlush:
      return "flush";
  }
  return "?";
}

}  // namespace

WsSession::WsSession(HttpServer* server, HttpConnection* conn, std::string room)
    : server_(server),
      conn_(conn),
      room_(std::move(room)),
      self_(std::make_shared<WsSession*>(this)) {}

WsSession::~WsSession() { mirror_.reset(); }

size_t WsSession::unsent_bytes() const { return conn_->unsent_bytes(); }

bool WsSession::closed() const { return conn_->closing(); }

void WsSession::Send() {
  server_->stats().ws_messages_out++;
  conn_->SendWs(WsOpcode::kText, scratch_);
}

void WsSession::Mirror(std::string_view prefix, std::optional<uint64_t> from) {
  mirror_.reset();  // a new mirror replaces the old one
  std::string prefix_copy(prefix);
  mirror_ =
      server_->backend()->StartMirror(room_, prefix_copy, from, this, [&](const MirrorBegin& b) {
        scratch_.clear();
        JsonWriter w(&scratch_);
        w.BeginObject().Key("type").String("mirror").Key("room").String(room_);
        w.BytesField("prefix", prefix_copy);
        w.Key("revision").Int(static_cast<int64_t>(b.revision));
        w.Key("mode").String(b.resume ? "resume" : "snapshot").EndObject();
        Send();
      });
}

void WsSession::Deliver(const MirrorUpdate& u) {
  if (conn_->closing()) return;
  scratch_.clear();
  JsonWriter w(&scratch_);
  w.BeginObject().Key("type").String(KindName(u.kind));
  switch (u.kind) {
    case MirrorUpdate::Kind::kSnapshot:
      w.Key("items").BeginArray();
      for (const KeyView& item : u.items) {
        w.BeginObject().BytesField("key", item.key).BytesField("value", item.value);
        w.Key("expire_at_ms").Int(item.expire_at_ms).EndObject();
      }
      w.EndArray();
      break;
    case MirrorUpdate::Kind::kSet:
      w.Key("revision").Int(static_cast<int64_t>(u.revision));
      w.BytesField("key", u.key).BytesField("value", u.value);
      w.Key("expire_at_ms").Int(u.expire_at_ms);
      break;
    case MirrorUpdate::Kind::kDel:
      w.Key("revision").Int(static_cast<int64_t>(u.revision));
      w.BytesField("key", u.key);
      w.Key("reason").String(u.expired ? "expired" : "del");
      break;
    case MirrorUpdate::Kind::kReset:
    case MirrorUpdate::Kind::kReady:
    case MirrorUpdate::Kind::kFlush:
      w.Key("revision").Int(static_cast<int64_t>(u.revision));
      break;
  }
  w.EndObject();
  Send();  // cuts the connection off past ws_output_limit (HttpConnection::SendWs)
}

void WsSession::OnDrained() {
  if (mirror_) server_->backend()->MirrorDrained();
}

void WsSession::SendError(std::string_view id_json, std::string_view code,
                          std::string_view message) {
  scratch_.clear();
  JsonWriter w(&scratch_);
  w.BeginObject().Key("type").String(id_json.empty() ? "error" : "result");
  if (!id_json.empty()) w.Key("id").Raw(id_json).Key("ok").Bool(false);
  w.Key("error").BeginObject().Key("code").String(code).Key("message").String(message).EndObject();
  w.EndObject();
  Send();
}

void WsSession::SendOutcome(std::string_view id_json, const WriteOutcome& out, bool del) {
  if (!out.ok) {
    size_t space = out.error.find(' ');
    std::string_view line = out.error;
    SendError(id_json.empty() ? "null" : id_json, line.substr(0, space),
              space == std::string_view::npos ? std::string_view() : line.substr(space + 1));
    return;
  }
  scratch_.clear();
  JsonWriter w(&scratch_);
  w.BeginObject().Key("type").String("result").Key("id").Raw(id_json.empty() ? "null" : id_json);
  w.Key("ok").Bool(true).Key("revision").Int(static_cast<int64_t>(out.revision));
  if (del) w.Key("deleted").Bool(out.integer > 0);
  w.EndObject();
  Send();
}

void WsSession::OnText(std::string_view text) {
  server_->stats().ws_messages_in++;
  nlohmann::json msg;
  std::string error;
  if (!ParseJsonObject(text, &msg, &error)) return SendError("", "ERR", error);
  std::string id_json;
  auto id = msg.find("id");
  if (id != msg.end()) {
    if (!id->is_number() && !id->is_string())
      return SendError("", "ERR", "'id' must be a number or a string");
    id_json = id->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  auto op_it = msg.find("op");
  if (op_it == msg.end() || !op_it->is_string())
    return SendError(id_json, "ERR", "message needs \"op\"");
  const std::string& op = op_it->get_ref<const std::string&>();
  bool ok = true;
  Backend* backend = server_->backend();

  if (op == "ping") {
    scratch_.clear();
    JsonWriter w(&scratch_);
    w.BeginObject().Key("type").String("result").Key("id").Raw(id_json.empty() ? "null" : id_json);
    w.Key("ok").Bool(true).EndObject();
    return Send();
  }
  if (op == "mirror") {
    std::optional<std::string> prefix = BytesMember(msg, "prefix", &ok, &error);
    std::optional<int64_t> from = IntMember(msg, "from", &ok, &error);
    if (!ok) return SendError(id_json, "ERR", error);
    if (from && *from < 0) return SendError(id_json, "ERR", "'from' must be a revision (>= 0)");
    std::optional<uint64_t> from_rev;
    if (from) from_rev = static_cast<uint64_t>(*from);
    Mirror(prefix.value_or(""), from_rev);
    return;
  }
  if (op == "unmirror") {
    mirror_.reset();
    scratch_.clear();
    JsonWriter w(&scratch_);
    w.BeginObject().Key("type").String("result").Key("id").Raw(id_json.empty() ? "null" : id_json);
    w.Key("ok").Bool(true).EndObject();
    return Send();
  }
  if (op == "stats") {
    if (!backend->RoomExists(room_)) return SendError(id_json, "NOTFOUND", "no such room");
    scratch_.clear();
    JsonWriter w(&scratch_);
    w.BeginObject().Key("type").String("result").Key("id").Raw(id_json.empty() ? "null" : id_json);
    w.Key("ok").Bool(true).Key("stats");
    WriteFields(w, backend->RoomStats(room_));
    w.EndObject();
    return Send();
  }
  if (op != "set" && op != "del") {
    return SendError(id_json, "ERR",
                     "unknown op '" + op + "' (mirror, unmirror, set, del, stats, ping)");
  }
  std::optional<std::string> key = BytesMember(msg, "key", &ok, &error);
  if (!ok) return SendError(id_json, "ERR", error);
  if (!key) return SendError(id_json, "ERR", "'" + op + "' needs \"key\" (or \"key_b64\")");
  std::weak_ptr<WsSession*> weak = self_;
  HttpServer* server = server_;
  uint64_t started = uv_hrtime();
  auto done = [weak, server, started, id_json, del = op == "del"](const WriteOutcome& out) {
    auto self = weak.lock();
    if (!self) return;
    server->stats().write_latency.Observe(static_cast<double>(uv_hrtime() - started) / 1e9);
    (*self)->SendOutcome(id_json, out, del);
  };
  if (op == "del") {
    backend->DeleteKey(room_, *key, std::move(done));
    return;
  }
  std::optional<std::string> value = BytesMember(msg, "value", &ok, &error);
  std::optional<int64_t> ttl = IntMember(msg, "ttl_ms", &ok, &error);
  if (!ok) return SendError(id_json, "ERR", error);
  if (!value) return SendError(id_json, "ERR", "'set' needs \"value\" (or \"value_b64\")");
  if (ttl && (*ttl < 0 || *ttl > (int64_t{1} << 50))) {
    return SendError(id_json, "ERR", "'ttl_ms' must be a positive number of milliseconds");
  }
  int64_t expire_at = ttl && *ttl > 0 ? backend->NowMs() + *ttl : 0;
  backend->SetKey(room_, *key, *value, expire_at, std::move(done));
}

}  // namespace distri::http
