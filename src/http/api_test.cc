// The API and security rules in-process, against a fake Backend (no sockets).

#include "http/api.h"

#include <gtest/gtest.h>

#include <map>

#include "http/security.h"

namespace distri::http {
namespace {

class FakeBackend final : public Backend {
 public:
  std::map<std::string, std::map<std::string, std::string>> rooms{{"default", {}}};
  uint64_t revision = 0;

  int64_t NowMs() const override { return 1000; }
  Fields SiteStats() override {
    return {{"version", std::string("t")}, {"keys", int64_t{2}}, {"r", 0.5}};
  }
  std::vector<Fields> ListRooms(bool) override {
    std::vector<Fields> out;
    for (auto& [code, keys] : rooms) out.push_back(RoomStats(code));
    return out;
  }
  bool RoomExists(std::string_view code) override { return rooms.count(std::string(code)) > 0; }
  Fields RoomStats(std::string_view code) override {
    return {{"code", std::string(code)},
            {"keys", static_cast<int64_t>(rooms[std::string(code)].size())}};
  }
  // Set: /api/stats answers through it (a cluster's gather); else at once from SiteStats.
  std::function<void(StatsDone)> gather_site;
  void GatherSiteStats(StatsDone done) override {
    if (gather_site) return gather_site(std::move(done));
    done(SiteStats());
  }
  std::optional<KeyEntry> GetKey(std::string_view room, std::string_view key) override {
    auto& r = rooms[std::string(room)];
    auto it = r.find(std::string(key));
    if (it == r.end()) return std::nullopt;
    return KeyEntry{it->first, it->second, 0};
  }
  uint64_t ScanKeys(std::string_view room, std::string_view prefix, uint64_t cursor, size_t limit,
                    std::vector<KeyEntry>* out) override {
    auto& r = rooms[std::string(room)];
    uint64_t i = 0;
    for (auto& [k, v] : r) {
      if (i++ < cursor || !k.starts_with(prefix)) continue;
      if (out->size() == limit) return i - 1;
      out->push_back({k, v, 0});
    }
    return 0;
  }
  void SetKey(std::string_view room, std::string_view key, std::string_view value, int64_t,
              WriteDone done) override {
    rooms[std::string(room)][std::string(key)] = std::string(value);
    done({true, "", 0, "", ++revision});
  }
  void DeleteKey(std::string_view room, std::string_view key, WriteDone done) override {
    int64_t n = static_cast<int64_t>(rooms[std::string(room)].erase(std::string(key)));
    done({true, "", n, "", ++revision});
  }
  void CreateRoom(std::string_view, WriteDone done) override {
    rooms["NEWCODE"];
    done({true, "", 0, "NEWCODE", ++revision});
  }
  void DropRoom(std::string_view code, WriteDone done) override {
    if (code == "default") {
      WriteOutcome out;
      out.error = "ERR the default room cannot be dropped";
      return done(out);
    }
    rooms.erase(std::string(code));
    done({true, "", 0, "", ++revision});
  }
  std::unique_ptr<MirrorHandle> StartMirror(
      std::string_view, std::string_view, std::optional<uint64_t>, MirrorOutput*,
      const std::function<void(const MirrorBegin&)>&) override {
    return nullptr;
  }
  void MirrorDrained() override {}
  ClusterView Cluster() override {
    ClusterView c;
    c.cluster = true;
    c.node_id = c.leader_id = 7;
    c.term = 3;
    ClusterMember self;
    self.id = 7;
    self.role = "leader";
    self.healthy = self.self = true;
    ClusterMember down;
    down.id = 9;
    down.role = "follower";
    c.nodes = {self, down};
    return c;
  }
  std::vector<ServiceInfo> Services(std::optional<std::string_view> room, bool) override {
    services_room = room ? std::optional<std::string>(std::string(*room)) : std::nullopt;
    std::vector<ServiceInfo> out(services);
    ServiceInfo s;
    s.room = "default";
    s.name = "echo";
    s.calls = 4;
    s.workers.push_back({0, 12, "w1", 3, 1});
    out.push_back(s);
    return out;
  }
  std::vector<ServiceInfo> services;  // listed before "echo"
  std::optional<std::string> services_room;
  void WriteMetrics(MetricsWriter& w) override { w.Gauge("distri_keys", "Keys", 2); }
  bool Ready(std::string*) override { return true; }
};

class ApiTest : public ::testing::Test {
 protected:
  Response Call(std::string method, std::string target, std::string body = "",
                std::vector<std::pair<std::string, std::string>> headers = {}) {
    Request req;
    req.method = std::move(method);
    req.target = target;
    size_t q = target.find('?');
    req.path = target.substr(0, q);
    if (q != std::string::npos) req.query = target.substr(q + 1);
    req.body = std::move(body);
    req.headers = std::move(headers);
    Response out;
    bool called = false;
    api_.Handle(req, MatchRoute(req.path), true, [&](Response r) {
      called = true;
      out = std::move(r);
    });
    EXPECT_TRUE(called);
    return out;
  }
  FakeBackend backend_;
  Api api_{&backend_, nullptr};
};

TEST_F(ApiTest, Routes) {
  EXPECT_EQ(MatchRoute("/api/rooms/a%2Fb/keys/x%2Fy").kind, Route::Kind::kKey);
  EXPECT_EQ(MatchRoute("/api/rooms/a%2Fb/keys/x%2Fy").code, "a/b");
  EXPECT_EQ(MatchRoute("/api/rooms/a%2Fb/keys/x%2Fy").key, "x/y");
  EXPECT_EQ(MatchRoute("/api/rooms/a/ws").kind, Route::Kind::kRoomWs);
  EXPECT_EQ(MatchRoute("/api/rooms/a/keys/%zz").kind, Route::Kind::kBadPath);
  EXPECT_EQ(MatchRoute("/api/rooms//keys").kind, Route::Kind::kNotFound);
  EXPECT_EQ(MatchRoute("/api/rooms/a/keys/b/c").kind, Route::Kind::kNotFound);
  EXPECT_EQ(MatchRoute("/nope").kind, Route::Kind::kNotFound);
}

TEST_F(ApiTest, UnknownRouteIsJson404) {
  Response r = Call("GET", "/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_NE(r.body.find("\"code\":\"NOTFOUND\""), std::string::npos);
}

TEST_F(ApiTest, KeyLifecycle) {
  Response r = Call("PUT", "/api/rooms/default/keys/k%201", "v1");
  EXPECT_EQ(r.status, 200) << r.body;
  r = Call("GET", "/api/rooms/default/keys/k%201");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"value\":\"v1\""), std::string::npos) << r.body;
  r = Call("PUT", "/api/rooms/default/keys/j", R"({"value_b64":"/w=="})",
           {{"content-type", "application/json"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(backend_.rooms["default"]["j"], "\xff");
  r = Call("GET", "/api/rooms/default/keys/j");
  EXPECT_NE(r.body.find("\"value_b64\":\"/w==\""), std::string::npos) << r.body;
  r = Call("GET", "/api/rooms/default/keys?limit=1");
  EXPECT_NE(r.body.find("\"done\":false"), std::string::npos) << r.body;
  r = Call("DELETE", "/api/rooms/default/keys/j");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"deleted\":true"), std::string::npos);
  EXPECT_EQ(Call("DELETE", "/api/rooms/default/keys/j").status, 404);
  EXPECT_EQ(Call("GET", "/api/rooms/nope/keys/j").status, 404);
  EXPECT_EQ(Call("PUT", "/api/rooms/nope/keys/j", "x").status, 404);
}

TEST_F(ApiTest, BadInput) {
  auto json =
      std::vector<std::pair<std::string, std::string>>{{"content-type", "application/json"}};
  EXPECT_EQ(Call("PUT", "/api/rooms/default/keys/k", "{", json).status, 400);
  EXPECT_EQ(Call("PUT", "/api/rooms/default/keys/k", "[1]", json).status, 400);
  EXPECT_EQ(Call("PUT", "/api/rooms/default/keys/k", R"({"value": 3})", json).status, 400);
  EXPECT_EQ(
      Call("PUT", "/api/rooms/default/keys/k", std::string(100, '[') + std::string(100, ']'), json)
          .status,
      400);
  EXPECT_EQ(Call("PUT", "/api/rooms/default/keys/k", R"({"value":"v","ttl_ms":-1})", json).status,
            400);
  EXPECT_EQ(Call("GET", "/api/rooms/default/keys?limit=0").status, 400);
  EXPECT_EQ(Call("GET", "/api/rooms/default/keys?limit=100000").status, 400);
  EXPECT_EQ(Call("GET", "/api/rooms/default/keys?cursor=x").status, 400);
  Response r = Call("POST", "/api/stats");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers[0].first, "Allow");
  EXPECT_EQ(Call("DELETE", "/api/rooms/default").status, 400);
}

TEST_F(ApiTest, RoomsAndStats) {
  Response r = Call("POST", "/api/rooms", R"({"name":"mine"})");
  EXPECT_EQ(r.status, 201);
  EXPECT_NE(r.body.find("\"code\":\"NEWCODE\""), std::string::npos);
  r = Call("GET", "/api/rooms");
  EXPECT_NE(r.body.find("NEWCODE"), std::string::npos);
  r = Call("GET", "/api/stats");
  EXPECT_EQ(r.body, R"({"version":"t","keys":2,"r":0.5})");
  r = Call("GET", "/metrics");
  EXPECT_EQ(r.content_type.rfind("text/plain", 0), 0u);
  EXPECT_NE(r.body.find("distri_keys 2"), std::string::npos);
  EXPECT_EQ(Call("GET", "/healthz").status, 200);
  EXPECT_EQ(Call("GET", "/readyz").status, 200);
}

TEST_F(ApiTest, Cluster) {
  Response r = Call("GET", "/api/cluster");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.rfind(R"({"cluster":true,"node_id":7,"cluster_id":0,"leader_id":7,)", 0), 0u)
      << r.body;
  EXPECT_NE(r.body.find(R"("id":9,"address":"","client_address":"","http_address":"",)"
                        R"("role":"follower","match_index":-1,"lag":-1,"last_contact_ms":-1,)"
                        R"("healthy":false,"self":false})"),
            std::string::npos)
      << r.body;
  EXPECT_EQ(Call("POST", "/api/cluster").status, 405);
}

TEST_F(ApiTest, Services) {
  Response r = Call("GET", "/api/services");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            R"({"services":[{"room":"default","name":"echo","calls":4,"errors":0,"timeouts":0,)"
            R"("p50_ms":0,"p99_ms":0,"waiting":0,"in_flight":0,"workers":[{"node_id":0,)"
            R"("worker_id":12,"label":"w1","concurrency":3,"in_flight":1}]}],)"
            R"("truncated":false})");
  EXPECT_FALSE(backend_.services_room);
  Call("GET", "/api/services?room=a%2Fb");
  EXPECT_EQ(backend_.services_room, "a/b");
  EXPECT_EQ(Call("GET", "/api/services?room=").status, 400);
  EXPECT_EQ(Call("GET", "/api/services?room=%zz").status, 400);
  EXPECT_EQ(Call("DELETE", "/api/services").status, 405);
  // A bounded answer: at most kMaxServicesListed, and it says so.
  backend_.services.resize(kMaxServicesListed, ServiceInfo{});
  r = Call("GET", "/api/services");
  EXPECT_EQ(r.body.find("echo"), std::string::npos);
  EXPECT_NE(r.body.find(R"("truncated":true})"), std::string::npos);
}

TEST(ErrorStatus, WireCodesMapToHttpStatus) {
  EXPECT_EQ(StatusForError("NOTFOUND no such room"), 404);
  EXPECT_EQ(StatusForError("OOM command not allowed"), 507);
  EXPECT_EQ(StatusForError("WRONGTYPE Operation against a key"), 409);
  // A write the log could not persist: the server's trouble, and retryable.
  EXPECT_EQ(StatusForError("IOERR write not applied: ... No space left on device"), 503);
  EXPECT_EQ(StatusForError("ERR syntax error"), 400);
}

TEST(Security, HostAndOrigin) {
  Request r;
  r.headers = {{"host", "127.0.0.1:7380"}};
  EXPECT_TRUE(HostAllowed(r, true));
  EXPECT_TRUE(OriginAllowed(r));
  r.headers = {{"host", "localhost:7380"}, {"origin", "http://localhost:7380"}};
  EXPECT_TRUE(HostAllowed(r, true));
  EXPECT_TRUE(OriginAllowed(r));
  r.headers = {{"host", "evil.example:7380"}, {"origin", "http://evil.example:7380"}};
  EXPECT_FALSE(HostAllowed(r, true));  // DNS rebinding
  EXPECT_TRUE(HostAllowed(r, false));
  r.headers = {{"host", "127.0.0.1:7380"}, {"origin", "http://evil.example"}};
  EXPECT_FALSE(OriginAllowed(r));
  r.headers = {{"host", "127.0.0.1:7380"}, {"origin", "null"}};
  EXPECT_FALSE(OriginAllowed(r));
  r.headers = {{"host", "[::1]:7380"}};
  EXPECT_TRUE(HostAllowed(r, true));
  EXPECT_FALSE(IsLoopbackAddress("127.0.0.1.evil.example"));
  EXPECT_TRUE(IsLoopbackAddress("127.1.2.3"));
}

}  // namespace
}  // namespace distri::http

namespace distri::http {
namespace {

TEST(Security, RequestPassword) {
  Request req;
  EXPECT_FALSE(RequestPassword(req));
  req.headers = {{"authorization", "Bearer s3cret pass"}};
  EXPECT_EQ(RequestPassword(req), "s3cret pass");
  req.headers = {{"authorization", "bearer x"}};
  EXPECT_EQ(RequestPassword(req), "x");
  req.headers = {{"authorization", "Basic eDp5"}};  // not ours: no password given
  EXPECT_FALSE(RequestPassword(req));
  // WebSocket: base64url without padding, among other offered protocols.
  req.headers = {{"sec-websocket-protocol", "distri, distri.auth.cMOkc3M_d29yZA"}};
  EXPECT_EQ(RequestPassword(req), "p\xc3\xa4ss?word");
  EXPECT_TRUE(OffersWsProtocol(req, kWsProtocol));
  req.headers = {{"sec-websocket-protocol", "chat"}};
  EXPECT_FALSE(RequestPassword(req));
  EXPECT_FALSE(OffersWsProtocol(req, kWsProtocol));
  req.headers = {{"sec-websocket-protocol", "distri.auth.!!"}};  // malformed: none
  EXPECT_FALSE(RequestPassword(req));
}

TEST_F(ApiTest, StatsRenderNodesNullsAndBooleans) {
  backend_.gather_site = [](StatsDone done) {
    Fields node_a = {{"id", int64_t{1}}, {"reachable", true}, {"clients", int64_t{2}}};
    Fields node_b = {{"id", int64_t{2}}, {"reachable", false}, {"clients", std::monostate{}}};
    done(Fields{{"clients", int64_t{2}},
                {"nodes", std::vector<Fields>{std::move(node_a), std::move(node_b)}}});
  };
  Response r = Call("GET", "/api/stats");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            "{\"clients\":2,\"nodes\":[{\"id\":1,\"reachable\":true,\"clients\":2},"
            "{\"id\":2,\"reachable\":false,\"clients\":null}]}");
}

TEST_F(ApiTest, StatsAnswerLaterOrBusy) {
  StatsDone later;
  backend_.gather_site = [&](StatsDone done) { later = std::move(done); };
  Request req;
  req.method = "GET";
  req.path = req.target = "/api/stats";
  std::optional<Response> out;
  api_.Handle(req, MatchRoute(req.path), true, [&](Response r) { out = std::move(r); });
  EXPECT_FALSE(out.has_value());  // waits for the gather
  later(Fields{{"clients", int64_t{5}}});
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->body, "{\"clients\":5}");
  // Too many gathers in flight on the node: 503, retry.
  backend_.gather_site = [](StatsDone done) { done(std::nullopt); };
  Response busy = Call("GET", "/api/stats");
  EXPECT_EQ(busy.status, 503);
  EXPECT_NE(busy.body.find("TRYAGAIN"), std::string::npos) << busy.body;
}

}  // namespace
}  // namespace distri::http
