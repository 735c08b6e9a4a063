// The JSON API, health, metrics and static routes; see api.h and docs/http.md.

#include "http/api.h"

#include <vector>

#include "base/strings.h"
#include "http/json_input.h"

namespace distri::http {

namespace {

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  path.remove_prefix(1);  // the leading '/'
  while (true) {
    size_t slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

Response MethodNotAllowed(std::string_view allow) {
  Response r = JsonError(405, "METHOD", "method not allowed; allowed: " + std::string(allow));
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

bool IsGet(const Request& req) { return req.method == "GET" || req.method == "HEAD"; }

Response NoSuchRoom() { return JsonError(404, "NOTFOUND", "no such room"); }

std::string QueryValue(const std::vector<std::pair<std::string, std::string>>& query,
                       std::string_view name, bool* present = nullptr) {
  for (const auto& [k, v] : query) {
    if (k == name) {
      if (present) *present = true;
      return v;
    }
  }
  if (present) *present = false;
  return {};
}

void WriteKeyEntry(JsonWriter& w, const KeyEntry& e, bool with_value) {
  w.BeginObject();
  w.BytesField("key", e.key);
  if (with_value) w.BytesField("value", e.value);
  w.Key("expire_at_ms").Int(e.expire_at_ms);
  w.EndObject();
}

}  // namespace

void WriteFields(JsonWriter& w, const Fields& fields) {
  w.BeginObject();
  for (const Field& f : fields) {
    w.Key(f.name);
    if (const int64_t* i = std::get_if<int64_t>(&f.value)) {
      w.Int(*i);
    } else if (const double* d = std::get_if<double>(&f.value)) {
      w.Double(*d);
    } else if (const std::string* s = std::get_if<std::string>(&f.value)) {
      w.String(*s);  // invalid UTF-8 shows as U+FFFD
    } else if (const bool* b = std::get_if<bool>(&f.value)) {
      w.Bool(*b);
    } else if (const auto* list = std::get_if<std::vector<Fields>>(&f.value)) {
      w.BeginArray();
      for (const Fields& item : *list) WriteFields(w, item);
      w.EndArray();
    } else {
      w.Null();
    }
  }
  w.EndObject();
}

int StatusForError(std::string_view line) {
  if (line.starts_with("NOTFOUND")) return 404;
  if (line.starts_with("OOM")) return 507;
  if (line.starts_with("LIMIT")) return 507;  // e.g. --max-rooms: the server is full
  if (line.starts_with("WRONGTYPE")) return 409;
  if (line.starts_with("IOERR")) return 503;
  if (line.starts_with("ERR")) return 400;
  return 500;
}

Response ErrorLineResponse(std::string_view line) {
  size_t space = line.find(' ');
  std::string_view code = line.substr(0, space);
  std::string_view message =
      space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  return JsonError(StatusForError(line), code, message);
}

namespace {

Route Simple(Route::Kind kind, std::string_view name) {
  Route r;
  r.kind = kind;
  r.name = name;
  return r;
}

}  // namespace

Route MatchRoute(std::string_view path) {
  Route r;
  if (const Asset* asset = FindAsset(path)) {
    r.kind = Route::Kind::kAsset;
    r.name = "asset";
    r.asset = asset;
    return r;
  }
  if (path == "/healthz") return Simple(Route::Kind::kHealthz, "/healthz");
  if (path == "/readyz") return Simple(Route::Kind::kReadyz, "/readyz");
  if (path == "/metrics") return Simple(Route::Kind::kMetrics, "/metrics");
  if (path == "/api/stats") return Simple(Route::Kind::kStats, "/api/stats");
  if (path == "/api/rooms") return Simple(Route::Kind::kRooms, "/api/rooms");
  if (path == "/api/cluster") return Simple(Route::Kind::kCluster, "/api/cluster");
  if (path == "/api/services") return Simple(Route::Kind::kServices, "/api/services");
  if (!path.starts_with("/api/rooms/")) return r;
  std::vector<std::string_view> parts = SplitPath(path);  // api, rooms, code, ...
  if (parts.size() < 3 || parts.size() > 5 || parts[2].empty()) return r;
  auto code = PercentDecode(parts[2]);
  if (!code) return Simple(Route::Kind::kBadPath, "bad");
  r.code = std::move(*code);
  if (parts.size() == 3) {
    r.kind = Route::Kind::kRoom;
    r.name = "/api/rooms/{code}";
  } else if (parts.size() == 4 && parts[3] == "keys") {
    r.kind = Route::Kind::kKeys;
    r.name = "/api/rooms/{code}/keys";
  } else if (parts.size() == 4 && parts[3] == "ws") {
    r.kind = Route::Kind::kRoomWs;
    r.name = "/api/rooms/{code}/ws";
  } else if (parts.size() == 5 && parts[3] == "keys" && !parts[4].empty()) {
    auto key = PercentDecode(parts[4]);
    if (!key) return Simple(Route::Kind::kBadPath, "bad");
    r.kind = Route::Kind::kKey;
    r.name = "/api/rooms/{code}/keys/{key}";
    r.key = std::move(*key);
  }
  return r;
}

void Api::Handle(const Request& req, const Route& route, bool show_codes, Respond respond) {
  switch (route.kind) {
    case Route::Kind::kNotFound:
      respond(JsonError(404, "NOTFOUND", "no route for " + req.method + " " + req.path));
      return;
    case Route::Kind::kBadPath:
      respond(JsonError(400, "ERR", "malformed percent-escape in the path"));
      return;
    case Route::Kind::kAsset: {
      if (!IsGet(req)) return respond(MethodNotAllowed("GET, HEAD"));
      const std::string* inm = req.Header("if-none-match");
      Response r;
      r.content_type = std::string(route.asset->content_type);
      r.headers.emplace_back("ETag", std::string(route.asset->etag));
      r.headers.emplace_back("Cache-Control", "no-cache");
      if (inm != nullptr && *inm == route.asset->etag) {
        r.status = 304;
      } else {
        r.body = std::string(route.asset->data);
      }
      respond(std::move(r));
      return;
    }
    case Route::Kind::kHealthz:
      if (!IsGet(req)) return respond(MethodNotAllowed("GET, HEAD"));
      respond(JsonOk("{\"status\":\"ok\"}"));
      return;
    case Route::Kind::kReadyz: {
      if (!IsGet(req)) return respond(MethodNotAllowed("GET, HEAD"));
      std::string why;
      if (backend_->Ready(&why)) return respond(JsonOk("{\"status\":\"ready\"}"));
      std::string body;
      JsonWriter w(&body);
      w.BeginObject().Key("status").String("not ready").Key("reason").String(why).EndObject();
      respond(JsonOk(std::move(body), 503));
      return;
    }
    case Route::Kind::kMetrics: {
      if (!IsGet(req)) return respond(MethodNotAllowed("GET, HEAD"));
      Response r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      MetricsWriter w(&r.body);
      backend_->WriteMetrics(w);
      if (own_metrics_) own_metrics_(w);
      respond(std::move(r));
      return;
    }
    case Route::Kind::kStats:
      if (!IsGet(req)) return respond(MethodNotAllowed("GET, HEAD"));
      Stats(respond);
      return;
    case Route::Kind::kRooms:
      Rooms(req, show_codes, respond);
      return;
    case Route::Kind::kRoom:
      Room(req, route, respond);
      return;
    case Route::Kind::kKeys:
      Keys(req, route, respond);
      return;
    case Route::Kind::kKey:
      Key(req, route, respond);
      return;
    case Route::Kind::kRoomWs:
      respond(JsonError(426, "UPGRADE", "this route is a WebSocket: send an Upgrade request"));
      return;
    case Route::Kind::kCluster:
      if (!IsGet(req)) return respond(MethodNotAllowed("GET, HEAD"));
      Cluster(respond);
      return;
    case Route::Kind::kServices:
      if (!IsGet(req)) return respond(MethodNotAllowed("GET, HEAD"));
      Services(req, show_codes, respond);
      return;
  }
}

namespace {

// The fields as a JSON object, or 503 when the node has too many statistics reads in flight.
Response StatsResponse(const std::optional<Fields>& fields) {
  if (!fields) {
    return JsonError(503, "TRYAGAIN", "too many statistics requests in flight on this node; retry");
  }
  std::string body;
  JsonWriter w(&body);
  WriteFields(w, *fields);
  return JsonOk(std::move(body));
}

}  // namespace

void Api::Stats(Respond& respond) {
  backend_->GatherSiteStats(
      [respond](std::optional<Fields> fields) { respond(StatsResponse(fields)); });
}

void Api::Rooms(const Request& req, bool show_codes, Respond& respond) {
  if (IsGet(req)) {
    std::string body;
    JsonWriter w(&body);
    w.BeginObject().Key("rooms").BeginArray();
    for (const Fields& room : backend_->ListRooms(show_codes)) WriteFields(w, room);
    w.EndArray().EndObject();
    respond(JsonOk(std::move(body)));
    return;
  }
  if (req.method != "POST") return respond(MethodNotAllowed("GET, HEAD, POST"));
  std::string name;
  if (!req.body.empty()) {
    nlohmann::json obj;
    std::string error;
    bool ok = true;
    if (!ParseJsonObject(req.body, &obj, &error)) return respond(JsonError(400, "ERR", error));
    std::optional<std::string> n = BytesMember(obj, "name", &ok, &error);
    if (!ok) return respond(JsonError(400, "ERR", error));
    if (n) name = std::move(*n);
  }
  backend_->CreateRoom(name, [respond, name](const WriteOutcome& out) {
    if (!out.ok) return respond(ErrorLineResponse(out.error));
    std::string body;
    JsonWriter w(&body);
    w.BeginObject().Key("code").String(out.text);
    w.BytesField("name", name.empty() ? out.text : name);
    w.Key("revision").Int(static_cast<int64_t>(out.revision)).EndObject();
    Response r = JsonOk(std::move(body), 201);
    r.headers.emplace_back("Location", "/api/rooms/" + PercentEncode(out.text));
    respond(std::move(r));
  });
}

void Api::Room(const Request& req, const Route& route, Respond& respond) {
  if (IsGet(req)) {
    if (!backend_->RoomExists(route.code)) return respond(NoSuchRoom());
    backend_->GatherRoomStats(
        route.code, [respond](std::optional<Fields> fields) { respond(StatsResponse(fields)); });
    return;
  }
  if (req.method != "DELETE") return respond(MethodNotAllowed("GET, HEAD, DELETE"));
  if (!backend_->RoomExists(route.code)) return respond(NoSuchRoom());
  backend_->DropRoom(route.code, [respond](const WriteOutcome& out) {
    if (!out.ok) return respond(ErrorLineResponse(out.error));
    std::string body;
    JsonWriter w(&body);
    w.BeginObject()
        .Key("dropped")
        .Bool(true)
        .Key("revision")
        .Int(static_cast<int64_t>(out.revision))
        .EndObject();
    respond(JsonOk(std::move(body)));
  });
}

void Api::Keys(const Request& req, const Route& route, Respond& respond) {
  if (!IsGet(req)) return respond(MethodNotAllowed("GET, HEAD"));
  auto query = ParseQuery(req.query);
  if (!query) return respond(JsonError(400, "ERR", "malformed percent-escape in the query"));
  if (!backend_->RoomExists(route.code)) return respond(NoSuchRoom());
  std::string prefix = QueryValue(*query, "prefix");
  uint64_t cursor = 0, limit = 100;
  bool present = false;
  std::string cursor_text = QueryValue(*query, "cursor", &present);
  if (present && !base::ParseUint64(cursor_text, &cursor)) {
    return respond(JsonError(400, "ERR", "cursor must be a number returned by an earlier page"));
  }
  std::string limit_text = QueryValue(*query, "limit", &present);
  if (present &&
      (!base::ParseUint64(limit_text, &limit) || limit == 0 || limit > kMaxKeysPerPage)) {
    return respond(
        JsonError(400, "ERR", "limit must be between 1 and " + std::to_string(kMaxKeysPerPage)));
  }
  bool values = QueryValue(*query, "values", &present) != "0";
  std::vector<KeyEntry> entries;
  uint64_t next = backend_->ScanKeys(route.code, prefix, cursor, limit, &entries);
  std::string body;
  JsonWriter w(&body);
  w.BeginObject().Key("room").String(route.code).Key("keys").BeginArray();
  for (const KeyEntry& e : entries) WriteKeyEntry(w, e, values);
  w.EndArray();
  // As a string: cursors may exceed what a JavaScript number holds exactly.
  w.Key("cursor").String(std::to_string(next)).Key("done").Bool(next == 0).EndObject();
  respond(JsonOk(std::move(body)));
}

void Api::Key(const Request& req, const Route& route, Respond& respond) {
  if (IsGet(req)) {
    if (!backend_->RoomExists(route.code)) return respond(NoSuchRoom());
    std::optional<KeyEntry> e = backend_->GetKey(route.code, route.key);
    if (!e) return respond(JsonError(404, "NOTFOUND", "no such key"));
    std::string body;
    JsonWriter w(&body);
    w.BeginObject().Key("room").String(route.code);
    w.BytesField("key", e->key).BytesField("value", e->value);
    w.Key("expire_at_ms").Int(e->expire_at_ms).EndObject();
    respond(JsonOk(std::move(body)));
    return;
  }
  if (req.method == "PUT") return PutKey(req, route, respond);
  if (req.method != "DELETE") return respond(MethodNotAllowed("GET, HEAD, PUT, DELETE"));
  if (!backend_->RoomExists(route.code)) return respond(NoSuchRoom());
  if (!backend_->GetKey(route.code, route.key))
    return respond(JsonError(404, "NOTFOUND", "no such key"));
  backend_->DeleteKey(route.code, route.key, [respond](const WriteOutcome& out) {
    if (!out.ok) return respond(ErrorLineResponse(out.error));
    std::string body;
    JsonWriter w(&body);
    w.BeginObject()
        .Key("deleted")
        .Bool(out.integer > 0)
        .Key("revision")
        .Int(static_cast<int64_t>(out.revision));
    w.EndObject();
    respond(JsonOk(std::move(body)));
  });
}

// PUT .../keys/{key}: the body is the value as it is, unless it is sent as
// application/json, when it is an envelope {"value": "...", "ttl_ms": n}.
void Api::PutKey(const Request& req, const Route& route, Respond& respond) {
  std::string value;
  int64_t ttl_ms = 0;
  const std::string* type = req.Header("content-type");
  bool ok = true;
  std::string error;
  if (type != nullptr && type->starts_with("application/json")) {
    nlohmann::json obj;
    if (!ParseJsonObject(req.body, &obj, &error)) return respond(JsonError(400, "ERR", error));
    std::optional<std::string> v = BytesMember(obj, "value", &ok, &error);
    if (!ok) return respond(JsonError(400, "ERR", error));
    if (!v)
      return respond(JsonError(400, "ERR", "the JSON body needs \"value\" (or \"value_b64\")"));
    value = std::move(*v);
    std::optional<int64_t> ttl = IntMember(obj, "ttl_ms", &ok, &error);
    if (!ok) return respond(JsonError(400, "ERR", error));
    if (ttl) ttl_ms = *ttl;
  } else {
    value = req.body;
    auto query = ParseQuery(req.query);
    if (!query) return respond(JsonError(400, "ERR", "malformed percent-escape in the query"));
    bool present = false;
    std::string ttl_text = QueryValue(*query, "ttl_ms", &present);
    uint64_t ttl = 0;
    if (present) {
      if (!base::ParseUint64(ttl_text, &ttl) || ttl > (1ull << 50)) {
        return respond(JsonError(400, "ERR", "ttl_ms must be a positive number of milliseconds"));
      }
      ttl_ms = static_cast<int64_t>(ttl);
    }
  }
  if (ttl_ms < 0 || ttl_ms > (int64_t{1} << 50)) {
    return respond(JsonError(400, "ERR", "ttl_ms must be a positive number of milliseconds"));
  }
  if (!backend_->RoomExists(route.code)) return respond(NoSuchRoom());
  int64_t expire_at = ttl_ms > 0 ? backend_->NowMs() + ttl_ms : 0;
  std::string code = route.code, key = route.key;
  backend_->SetKey(code, key, value, expire_at,
                   [respond, code, key, expire_at](const WriteOutcome& out) {
                     if (!out.ok) return respond(ErrorLineResponse(out.error));
                     std::string body;
                     JsonWriter w(&body);
                     w.BeginObject().Key("room").String(code);
                     w.BytesField("key", key);
                     w.Key("expire_at_ms")
                         .Int(expire_at)
                         .Key("revision")
                         .Int(static_cast<int64_t>(out.revision))
                         .EndObject();
                     respond(JsonOk(std::move(body)));
                   });
}

// GET /api/cluster: this node's view, for the dashboard's cluster page (which polls it often:
// it is answered from memory, with no request to other nodes).
void Api::Cluster(Respond& respond) {
  const ClusterView c = backend_->Cluster();
  std::string body;
  JsonWriter w(&body);
  w.BeginObject();
  w.Key("cluster").Bool(c.cluster);
  w.Key("node_id").Int(static_cast<int64_t>(c.node_id));
  w.Key("cluster_id").Int(static_cast<int64_t>(c.cluster_id));
  w.Key("leader_id").Int(static_cast<int64_t>(c.leader_id));
  w.Key("role").String(c.role);
  w.Key("term").Int(static_cast<int64_t>(c.term));
  w.Key("commit_index").Int(static_cast<int64_t>(c.commit_index));
  w.Key("applied_index").Int(static_cast<int64_t>(c.applied_index));
  w.Key("nodes").BeginArray();
  for (const ClusterMember& m : c.nodes) {
    w.BeginObject();
    w.Key("id").Int(static_cast<int64_t>(m.id));
    w.Key("address").String(m.address);
    w.Key("client_address").String(m.client_address);
    w.Key("http_address").String(m.http_address);
    w.Key("role").String(m.role);
    w.Key("match_index").Int(m.match_index);
    w.Key("lag").Int(m.lag);
    w.Key("last_contact_ms").Int(m.last_contact_ms);
    w.Key("healthy").Bool(m.healthy);
    w.Key("self").Bool(m.self);
    w.EndObject();
  }
  w.EndArray().EndObject();
  respond(JsonOk(std::move(body)));
}

// GET /api/services[?room=CODE]: services with their workers and the calls they hold.
void Api::Services(const Request& req, bool show_codes, Respond& respond) {
  auto query = ParseQuery(req.query);
  if (!query) return respond(JsonError(400, "ERR", "malformed percent-escape in the query"));
  bool present = false;
  std::string room = QueryValue(*query, "room", &present);
  if (present && room.empty()) return respond(JsonError(400, "ERR", "room must be a room code"));
  std::optional<std::string_view> filter;
  if (present) filter = room;
  const std::vector<ServiceInfo> services = backend_->Services(filter, show_codes);
  std::string body;
  JsonWriter w(&body);
  w.BeginObject().Key("services").BeginArray();
  for (size_t i = 0; i < services.size() && i < kMaxServicesListed; i++) {
    const ServiceInfo& s = services[i];
    w.BeginObject();
    w.Key("room").String(s.room);
    w.BytesField("name", s.name);
    w.Key("calls").Int(s.calls);
    w.Key("errors").Int(s.errors);
    w.Key("timeouts").Int(s.timeouts);
    w.Key("p50_ms").Double(s.p50_ms);
    w.Key("p99_ms").Double(s.p99_ms);
    w.Key("waiting").Int(s.waiting);
    w.Key("in_flight").Int(s.in_flight);
    w.Key("workers").BeginArray();
    for (const ServiceWorker& wk : s.workers) {
      w.BeginObject();
      w.Key("node_id").Int(static_cast<int64_t>(wk.node_id));
      w.Key("worker_id").Int(static_cast<int64_t>(wk.worker_id));
      w.Key("label").String(wk.label);
      w.Key("concurrency").Int(wk.concurrency);
      w.Key("in_flight").Int(wk.in_flight);
      w.EndObject();
    }
    w.EndArray().EndObject();
  }
  w.EndArray();
  w.Key("truncated").Bool(services.size() > kMaxServicesListed).EndObject();
  respond(JsonOk(std::move(body)));
}

}  // namespace distri::http
