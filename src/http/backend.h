// Backend: what the HTTP endpoint needs from the rest of the server.
//
// src/http knows nothing of the state machine, the log or the mirror hub; it
// talks to this interface, which server/http_backend.cc implements with the
// Server's public API (and tests implement with fakes). Reads answer at
// once; writes go through the log and call `done` once applied (possibly
// before the call returns, e.g. when the log refuses the entry).
//
// Thread-safety: loop thread only.

#ifndef DISTRI_HTTP_BACKEND_H_
#define DISTRI_HTTP_BACKEND_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace distri::net {
struct OutputGauge;
}  // namespace distri::net

namespace distri::http {

class MetricsWriter;

// What bounds one HTTP connection's unsent responses when the backend sets
// nothing else (the RESP port's default ordinary output limit).
inline constexpr uint64_t kDefaultResponseOutputLimit = 256ull << 20;

// One named statistic (the same lists STATS and ROOM.STATS render). std::monostate is
// JSON null (a figure an unreachable node could not give); a vector of field lists is an
// array of objects (the per-node breakdown, "nodes").
struct Field;
using Fields = std::vector<Field>;
struct Field {
  std::string name;
  std::variant<int64_t, double, std::string, bool, std::monostate, std::vector<Fields>> value;
};
// The answer to a statistics read that may wait for other nodes: the fields, or nullopt when
// the node has too many such reads in flight (503, retry).
using StatsDone = std::function<void(std::optional<Fields>)>;

struct KeyEntry {
  std::string key;
  std::string value;
  int64_t expire_at_ms = 0;  // Unix ms; 0 = none
};

// A write's outcome once applied (or refused).
struct WriteOutcome {
  bool ok = false;
  std::string error;      // when !ok: the full error line, e.g. "NOTFOUND no such room"
  int64_t integer = 0;    // integer result (keys deleted)
  std::string text;       // bulk result (a new room's code)
  uint64_t revision = 0;  // the revision the write applied at
};
using WriteDone = std::function<void(const WriteOutcome&)>;

// ---------------------------------------------------------------------------
// Live mirrors (docs/protocol.md, "Live mirrors"), as the WebSocket sees them.

struct KeyView {
  std::string_view key;
  std::string_view value;
  int64_t expire_at_ms = 0;
};

struct MirrorUpdate {
  enum class Kind : uint8_t { kReset, kSnapshot, kReady, kSet, kDel, kFlush };
  Kind kind = Kind::kReady;
  uint64_t revision = 0;
  std::string_view key;
  std::string_view value;
  int64_t expire_at_ms = 0;
  bool expired = false;
  std::span<const KeyView> items;  // kSnapshot
};

// Implemented by the WebSocket session: where a mirror's updates go.
class MirrorOutput {
 public:
  virtual ~MirrorOutput() = default;
  virtual void Deliver(const MirrorUpdate& update) = 0;
  virtual size_t unsent_bytes() const = 0;
  virtual bool closed() const = 0;
};

// A running mirror; destroying it stops the mirror.
class MirrorHandle {
 public:
  virtual ~MirrorHandle() = default;
};

struct MirrorBegin {
  uint64_t revision = 0;  // the room's state revision now
  bool resume = false;    // true: changes after FROM follow; false: reset + snapshot
};

// ---------------------------------------------------------------------------
// The cluster and services pages (GET /api/cluster, GET /api/services).

// One member as this node sees it (CLUSTER.NODES' fields).
struct ClusterMember {
  uint64_t id = 0;
  std::string address;  // cluster address
  std::string client_address, http_address;
  std::string role;           // "leader", "follower", "learner"; "standalone" without a cluster
  int64_t match_index = -1;   // -1: unknown to this node
  int64_t lag = -1;
  int64_t last_contact_ms = -1;  // 0 for this node; -1: never heard from
  bool healthy = false;          // a link to it is up (always true for this node)
  bool self = false;
};

struct ClusterView {
  bool cluster = false;  // false: a single node without a cluster (ids are 0)
  uint64_t node_id = 0, cluster_id = 0, leader_id = 0, term = 0;
  std::string role;  // this node's
  uint64_t commit_index = 0, applied_index = 0;
  std::vector<ClusterMember> nodes;
};

struct ServiceWorker {
  uint64_t node_id = 0;    // 0 on a node without a cluster
  uint64_t worker_id = 0;  // its client id on that node
  std::string label;
  int64_t concurrency = 0;
  int64_t in_flight = 0;
};

struct ServiceInfo {
  std::string room;  // the code for an admin, else the room's id
  std::string name;
  int64_t calls = 0, errors = 0, timeouts = 0;
  double p50_ms = 0, p99_ms = 0;
  int64_t waiting = 0, in_flight = 0;
  std::vector<ServiceWorker> workers;
};

// A password check (see Backend::Authenticate).
enum class AuthResult : uint8_t {
  kOk,
  kWrong,
  kLimited,  // too many failures from this address lately: not checked
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Whether requests must carry the server's password (--requirepass).
  virtual bool auth_required() const { return false; }
  // Whether every client is an admin (no password, loopback; see
  // commands/access.h). With a password, every authorized request is one.
  virtual bool open_admin() const { return true; }
  // Checks a password from `peer` ("ip:port"), in constant time, counting
  // failures against the same per-address limit as the RESP port's AUTH.
  virtual AuthResult Authenticate(std::string_view peer, std::string_view password) {
    (void)peer;
    (void)password;
    return AuthResult::kWrong;
  }

  // Unsent output (docs/protocol.md "Unsent output"). The gauges the server
  // sums into used memory: HTTP responses count as ordinary output, WebSocket
  // frames as pushed output (under the push output budget). nullptr: not
  // counted.
  virtual net::OutputGauge* response_gauge() { return nullptr; }
  virtual net::OutputGauge* push_gauge() { return nullptr; }
  // The most unsent response bytes one HTTP connection may hold before it is
  // cut off (the RESP port's hard ordinary output limit); 0 = no limit.
  virtual uint64_t response_output_limit() const { return kDefaultResponseOutputLimit; }

  virtual int64_t NowMs() const = 0;
  virtual Fields SiteStats() = 0;
  // Every room that holds or held data, as room stats. `with_codes`: for an
  // admin; otherwise each room shows its id, never its code (commands/access.h).
  virtual std::vector<Fields> ListRooms(bool with_codes) = 0;
  // Whether the room exists or may be used (builtin rooms always may).
  virtual bool RoomExists(std::string_view code) = 0;
  virtual Fields RoomStats(std::string_view code) = 0;
  // /api/stats and GET /api/rooms/<code>: in a cluster every member's figures, gathered
  // (`done` runs later, within about a second); by default this node's alone, at once.
  virtual void GatherSiteStats(StatsDone done) { done(SiteStats()); }
  virtual void GatherRoomStats(std::string_view code, StatsDone done) { done(RoomStats(code)); }
  virtual std::optional<KeyEntry> GetKey(std::string_view room, std::string_view key) = 0;
  // One page of the room's keys under `prefix`, starting at `cursor` (0 =
  // start); appends at most `limit` live keys and returns the next cursor
  // (0 = done). SCAN semantics: every key present for the whole iteration is
  // returned at least once.
  virtual uint64_t ScanKeys(std::string_view room, std::string_view prefix, uint64_t cursor,
                            size_t limit, std::vector<KeyEntry>* out) = 0;

  virtual void SetKey(std::string_view room, std::string_view key, std::string_view value,
                      int64_t expire_at_ms, WriteDone done) = 0;
  virtual void DeleteKey(std::string_view room, std::string_view key, WriteDone done) = 0;
  // outcome.text is the new code.
  virtual void CreateRoom(std::string_view name, WriteDone done) = 0;
  virtual void DropRoom(std::string_view code, WriteDone done) = 0;

  // Starts mirroring `room` into `out`; `begin` runs before the first update.
  virtual std::unique_ptr<MirrorHandle> StartMirror(
      std::string_view room, std::string_view prefix, std::optional<uint64_t> from,
      MirrorOutput* out, const std::function<void(const MirrorBegin&)>& begin) = 0;
  // A mirror's output drained: snapshot streaming may continue.
  virtual void MirrorDrained() = 0;

  // This node's view of its cluster, at once (no request to other nodes).
  virtual ClusterView Cluster() = 0;
  // Services with workers or calls, sorted by room and name; only `room`'s when given.
  // `with_codes`: see ListRooms.
  virtual std::vector<ServiceInfo> Services(std::optional<std::string_view> room,
                                            bool with_codes) = 0;

  // Appends the server's metrics (the HTTP server appends its own).
  virtual void WriteMetrics(MetricsWriter& w) = 0;
  // /readyz: false (with why) while the node cannot serve writes.
  virtual bool Ready(std::string* why) = 0;
};

}  // namespace distri::http

#endif  // DISTRI_HTTP_BACKEND_H_
